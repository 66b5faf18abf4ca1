//! SMS and email: notification records, templates, Twilio and Mailgun delivery.
