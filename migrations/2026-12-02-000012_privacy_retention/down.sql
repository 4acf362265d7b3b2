DROP INDEX generations_retention_idx;
ALTER TABLE generations DROP COLUMN deleted_at;
ALTER TABLE erased_identities
    DROP COLUMN recent_generations,
    DROP COLUMN free_period_start,
    DROP COLUMN free_actions_used,
    DROP COLUMN blocked;
