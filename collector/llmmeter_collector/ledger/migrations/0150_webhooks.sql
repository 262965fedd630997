-- Event webhooks (notify/webhooks.py): subscriptions, and one delivery per subscription and event (the event's id is
-- unique per subscription: an event noticed twice is delivered once), with its attempts: the delivery log.
CREATE TABLE llm_webhooks (
    id         bigserial   PRIMARY KEY,
    url        text        NOT NULL,
    events     text[]      NOT NULL,
    format     text        NOT NULL DEFAULT 'json',   -- json | slack
    secret     text        NOT NULL,                  -- signs every delivery (HMAC-SHA256)
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text        NOT NULL DEFAULT '',
    removed_at timestamptz
);

CREATE TABLE llm_webhook_deliveries (
    id              bigserial   PRIMARY KEY,
    webhook_id      bigint      NOT NULL REFERENCES llm_webhooks (id),
    event           text        NOT NULL,
    event_id        text        NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX llm_webhook_deliveries_due_idx ON llm_webhook_deliveries (next_attempt_at) WHERE status = 'pending';
