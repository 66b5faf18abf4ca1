DROP TABLE mailgun_webhook_tokens;
DROP TABLE notifications;
