DROP TABLE erased_identities;
