"""Redaction for retention: blank a sealed event's payload and mark it, nothing else.

The chain holds each payload only as its SHA-256 (`payload_sha256`), so a blanked payload
leaves every link verifiable. What a redacted payload keeps is fixed here, in
`hitl_audit_redacted_payload`: `{"redacted": true}`, plus, for `review.decided`, the run and
decision ids (not personal data), so the verifier can still pair the decision with its event.

The append-only trigger lets exactly that change through: on a sealed, unredacted event,
the payload becomes the mark and `redacted_at` is set, every other column unchanged.
`hitl_audit_redact(id)` makes it, running with its owner's rights (SECURITY DEFINER), so the
application's role, which may not UPDATE a payload, can redact without being able to write
anything else into one. The service that calls it (`workflows.services.audit_redact`) writes
the `audit.redacted` event that names what was redacted and why.
"""

from django.db import migrations, models

FORWARD = """
CREATE OR REPLACE FUNCTION hitl_audit_redacted_payload(verb text, payload jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN verb = 'review.decided'
        THEN jsonb_strip_nulls(jsonb_build_object(
            'redacted', true, 'run', payload->'run', 'decision', payload->'decision'))
        ELSE '{"redacted": true}'::jsonb
    END
$$;

CREATE OR REPLACE FUNCTION workflows_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit events are append-only: DELETE refused (event %)', OLD.id;
    END IF;
    -- The seal fills seq, prev_hash, hash, key_id and sealed_at once; nothing else changes.
    IF OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND (NEW.id, NEW.created_at, NEW.actor_type, NEW.actor_id, NEW.actor_label, NEW.verb,
            NEW.object_type, NEW.object_id, NEW.payload, NEW.payload_sha256, NEW.redacted_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.created_at, OLD.actor_type, OLD.actor_id, OLD.actor_label, OLD.verb,
            OLD.object_type, OLD.object_id, OLD.payload, OLD.payload_sha256, OLD.redacted_at)
    THEN
        RETURN NEW;
    END IF;
    -- Redaction: a sealed event's payload becomes the mark, once; nothing else changes.
    IF OLD.seq IS NOT NULL AND OLD.redacted_at IS NULL AND NEW.redacted_at IS NOT NULL
       AND NEW.payload = hitl_audit_redacted_payload(OLD.verb, OLD.payload)
       AND (NEW.id, NEW.created_at, NEW.actor_type, NEW.actor_id, NEW.actor_label, NEW.verb,
            NEW.object_type, NEW.object_id, NEW.payload_sha256, NEW.seq, NEW.prev_hash,
            NEW.hash, NEW.key_id, NEW.sealed_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.created_at, OLD.actor_type, OLD.actor_id, OLD.actor_label, OLD.verb,
            OLD.object_type, OLD.object_id, OLD.payload_sha256, OLD.seq, OLD.prev_hash,
            OLD.hash, OLD.key_id, OLD.sealed_at)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: UPDATE refused (event %)', OLD.id;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION hitl_audit_redact(event_id bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE workflows_auditevent
    SET payload = hitl_audit_redacted_payload(verb, payload), redacted_at = statement_timestamp()
    WHERE id = event_id AND seq IS NOT NULL AND redacted_at IS NULL
      AND verb NOT LIKE 'audit.%%';
    RETURN FOUND;
END;
$$;
-- Granted to the application's role after migrating (workflows.dbroles), to nobody else.
REVOKE ALL ON FUNCTION hitl_audit_redact(bigint) FROM PUBLIC;
"""

REVERSE = """
DROP FUNCTION IF EXISTS hitl_audit_redact(bigint);
"""


class Migration(migrations.Migration):
    dependencies = [("workflows", "0009_audit_keyed_chain")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="redacted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunSQL(FORWARD, REVERSE),
    ]
