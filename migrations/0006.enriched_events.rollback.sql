ALTER TABLE events
    DROP COLUMN event_id, DROP COLUMN visitor, DROP COLUMN referrer, DROP COLUMN source,
    DROP COLUMN utm_source, DROP COLUMN utm_medium, DROP COLUMN utm_campaign, DROP COLUMN utm_term,
    DROP COLUMN utm_content, DROP COLUMN browser, DROP COLUMN browser_version, DROP COLUMN os,
    DROP COLUMN os_version, DROP COLUMN device, DROP COLUMN country, DROP COLUMN props;
