DROP TABLE charge_disputes;
DROP TABLE claim_photos;
DROP TABLE claim_reserve_changes;
DROP TABLE claim_status_changes;
DROP TABLE claims;
