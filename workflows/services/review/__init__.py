"""Review tasks: opened by gates, claimed as leases, decided once, escalated.

- `tasks`: a task's life with its gate (open, escalate, cancel), inside engine transactions;
- `claims`: claiming, renewing, releasing, skipping and reassigning;
- `decisions`: approve, reject, edit-and-approve, escalate.

The SLA and lapsed-claim sweeps are with every other sweep, in `workflows.services.sweepers`.
This package's modules are imported by their full names (`workflows.services` re-exports the
services): re-exporting them here would make importing `tasks` load `decisions`, and with it
the run services, in the middle of the step services' own import.
"""
