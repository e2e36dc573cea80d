-- Events still waiting to be counted would be stored but never counted by the previous version: refuse to roll back
-- over them (run the writers until the table is empty, then roll back).
DO $$
BEGIN
    IF EXISTS (SELECT FROM uncounted_events) THEN
        RAISE EXCEPTION 'uncounted_events still holds events: let the writers count them before rolling back';
    END IF;
END $$;
DROP TABLE uncounted_events;
