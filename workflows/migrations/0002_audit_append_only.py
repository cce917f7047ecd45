"""Make the audit table append-only in PostgreSQL itself.

UPDATE and DELETE are refused, except the one-time seal, which may only fill `seq`,
`prev_hash`, `hash` and `sealed_at` on a row that has no `seq` yet.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION workflows_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit events are append-only: DELETE refused (event %)', OLD.id;
    END IF;
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

CREATE TRIGGER workflows_auditevent_append_only
    BEFORE UPDATE OR DELETE ON workflows_auditevent
    FOR EACH ROW EXECUTE FUNCTION workflows_auditevent_append_only();
"""

REVERSE = """
DROP TRIGGER IF EXISTS workflows_auditevent_append_only ON workflows_auditevent;
DROP FUNCTION IF EXISTS workflows_auditevent_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("workflows", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
