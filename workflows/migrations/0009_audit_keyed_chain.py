"""The keyed audit chain: a key id per sealed event, the database's clock on every insert, and
a table of verification runs.

`key_id` is filled once by the seal, like `seq`, `prev_hash`, `hash` and `sealed_at`: the
append-only function is recreated to say so, and still compares every other column.

`created_at` comes from `statement_timestamp()`, set by a BEFORE INSERT trigger whatever the
INSERT says, so no caller (nor the fast path's raw SQL) can date an event. Why that clock:
- not `transaction_timestamp()` (`now()`): a transaction's start may be long before its insert,
  and the verifier flags an event created before the seal that preceded it; the slack it
  allows must cover only the time from the insert to the commit;
- not `clock_timestamp()`: it differs row by row, and one transition's events, written by one
  multi-row INSERT, happened at one moment (as they did when Python passed one `now`);
- `statement_timestamp()` is the same for every row of one statement and is taken when that
  statement starts, inside the business transaction.
"""

import django.utils.timezone
from django.db import migrations, models
from django.db.models.functions import Now

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION workflows_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit events are append-only: DELETE refused (event %)', OLD.id;
    END IF;
    -- The seal fills seq, prev_hash, hash, key_id and sealed_at once; nothing else changes.
    IF OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND (NEW.id, NEW.created_at, NEW.actor_type, NEW.actor_id, NEW.actor_label, NEW.verb,
            NEW.object_type, NEW.object_id, NEW.payload, NEW.payload_sha256)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.created_at, OLD.actor_type, OLD.actor_id, OLD.actor_label, OLD.verb,
            OLD.object_type, OLD.object_id, OLD.payload, OLD.payload_sha256)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: UPDATE refused (event %)', OLD.id;
END;
$$ LANGUAGE plpgsql;
"""

DATABASE_CLOCK = """
CREATE OR REPLACE FUNCTION workflows_auditevent_database_clock() RETURNS trigger AS $$
BEGIN
    NEW.created_at := statement_timestamp();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER workflows_auditevent_database_clock
    BEFORE INSERT ON workflows_auditevent
    FOR EACH ROW EXECUTE FUNCTION workflows_auditevent_database_clock();
"""

NO_DATABASE_CLOCK = """
DROP TRIGGER IF EXISTS workflows_auditevent_database_clock ON workflows_auditevent;
DROP FUNCTION IF EXISTS workflows_auditevent_database_clock();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0008_run_callback_endpoint"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditVerification",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("verified_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("first_seq", models.BigIntegerField()),
                ("last_seq", models.BigIntegerField()),
                ("last_hash", models.CharField(max_length=64)),
                ("checked", models.BigIntegerField()),
                ("ok", models.BooleanField()),
                ("problem", models.TextField(blank=True)),
            ],
            options={"ordering": ["-id"]},
        ),
        migrations.AddField(
            model_name="auditevent",
            name="key_id",
            field=models.CharField(blank=True, db_default="", max_length=32),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="created_at",
            field=models.DateTimeField(db_default=Now()),
        ),
        # The 0002 function already let any column it does not compare change during the seal;
        # recreating it (same body, a comment naming key_id) keeps the list in one place.
        migrations.RunSQL(APPEND_ONLY, migrations.RunSQL.noop),
        migrations.RunSQL(DATABASE_CLOCK, NO_DATABASE_CLOCK),
    ]
