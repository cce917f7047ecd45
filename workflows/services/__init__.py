"""Every write and state change goes through these services (HackSoft style).

Services are `<entity>_<verb>(*, ...)` with keyword-only arguments. The periodic sweeps
are in `sweepers`; the engine's two hot statements are in `fastpath`; what step kinds may
ask of the services is in `hooks`.
"""

from workflows.services.access import (
    user_access,
    user_access_record,
    workflow_created_record,
    workflow_roles,
    workflow_roles_record,
)
from workflows.services.ai import local_model_train, workflow_set_daily_cap
from workflows.services.alerts import alert_raise, beat_gap_check
from workflows.services.audit import Actor, audit_backlog, audit_record, audit_seal
from workflows.services.audit_redact import audit_redact
from workflows.services.audit_verify import audit_verify, audit_verify_scheduled
from workflows.services.callbacks import deliveries_enqueue
from workflows.services.datasets import dataset_export
from workflows.services.definitions import workflow_import
from workflows.services.deliveries import delivery_redeliver, delivery_send
from workflows.services.endpoints import (
    endpoint_create,
    endpoint_disable,
    endpoint_enable,
    endpoint_rotate_secret,
    endpoint_update,
)
from workflows.services.gates import gate_calibrate, gate_threshold_apply, gates_calibrate_due
from workflows.services.learning import local_model_retrain, local_models_retrain_due
from workflows.services.review.claims import (
    review_claim,
    review_claim_next,
    review_claims_held,
    review_reassign,
    review_release,
    review_renew,
    review_skip,
)
from workflows.services.review.decisions import review_decide
from workflows.services.runs import (
    run_cancel,
    run_resume,
    run_retry,
    run_start,
    runs_retry_failed,
)
from workflows.services.steps import (
    run_advance,
    run_drive,
    step_execute,
    step_fail,
    step_retry,
)
from workflows.services.sweepers import (
    ai_budget_sweep,
    deliveries_sweep,
    review_claims_expire,
    review_sla_breach,
    review_sla_warn,
    review_sweep,
    steps_sweep,
)

__all__ = [
    "Actor",
    "ai_budget_sweep",
    "alert_raise",
    "audit_backlog",
    "audit_record",
    "audit_redact",
    "audit_seal",
    "audit_verify",
    "audit_verify_scheduled",
    "beat_gap_check",
    "dataset_export",
    "deliveries_enqueue",
    "deliveries_sweep",
    "delivery_redeliver",
    "delivery_send",
    "endpoint_create",
    "endpoint_disable",
    "endpoint_enable",
    "endpoint_rotate_secret",
    "endpoint_update",
    "gate_calibrate",
    "gate_threshold_apply",
    "gates_calibrate_due",
    "local_model_retrain",
    "local_model_train",
    "local_models_retrain_due",
    "review_claim",
    "review_claim_next",
    "review_claims_expire",
    "review_claims_held",
    "review_decide",
    "review_reassign",
    "review_release",
    "review_renew",
    "review_skip",
    "review_sla_breach",
    "review_sla_warn",
    "review_sweep",
    "run_advance",
    "run_cancel",
    "run_drive",
    "run_resume",
    "run_retry",
    "run_start",
    "runs_retry_failed",
    "step_execute",
    "step_fail",
    "step_retry",
    "steps_sweep",
    "user_access",
    "user_access_record",
    "workflow_created_record",
    "workflow_import",
    "workflow_roles",
    "workflow_roles_record",
    "workflow_set_daily_cap",
]
