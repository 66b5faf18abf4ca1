DROP TABLE partner_api_keys;
DROP TABLE partners;
DROP TABLE staff_sessions;
DROP TABLE staff;
DROP TABLE vehicles;
DROP TABLE driver_sessions;
DROP TABLE login_codes;
DROP TABLE drivers;
