-- Cloud AI spend from FOCUS exports (AWS, Azure, Google Cloud), kept beside the ledger for the reconciliation view
-- (exporters/focus.py, api/focus.py). One import per file content: importing the same file again adds nothing.
CREATE TABLE focus_imports (
    id          bigserial   PRIMARY KEY,
    sha256      text        NOT NULL UNIQUE,   -- of the file's bytes
    file_name   text        NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    rows_read   bigint      NOT NULL,          -- every row of the file
    rows_kept   bigint      NOT NULL           -- its AI-service rows, kept below
);

CREATE TABLE focus_costs (
    import_id        bigint      NOT NULL REFERENCES focus_imports (id) ON DELETE CASCADE,
    row_number       bigint      NOT NULL,     -- in the file, from 1 after the header
    charge_start     timestamptz NOT NULL,
    charge_end       timestamptz NOT NULL,
    provider         text        NOT NULL,     -- ProviderName (1.2) / ServiceProviderName (1.3)
    service          text        NOT NULL,
    category         text        NOT NULL,
    sku              text        NOT NULL,
    description      text        NOT NULL,
    billed_cost      numeric     NOT NULL,
    effective_cost   numeric     NOT NULL,
    currency         text        NOT NULL,
    quantity         numeric,
    unit             text        NOT NULL,
    sub_account      text        NOT NULL,
    tags             jsonb       NOT NULL DEFAULT '{}',
    ledger_provider  text        NOT NULL,     -- the ledger's gen_ai.provider.name for this service ('' = none)
    PRIMARY KEY (import_id, row_number)
);
CREATE INDEX focus_costs_start_idx ON focus_costs (charge_start);
