DROP TABLE webhook_deliveries;
DROP TABLE webhook_backlog;
DROP TABLE webhooks;
