DROP TABLE refunds;
DROP TABLE stripe_events;
DROP TABLE auto_top_up_settings;
DROP TABLE top_ups;
DROP TABLE card_setups;
DROP TABLE payment_methods;
DROP TABLE stripe_customers;
