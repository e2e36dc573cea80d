-- Nothing to undo: the previous version reads NULL paths and user ids as it always did, and which rows held ''
-- before is not kept.
SELECT 1;
