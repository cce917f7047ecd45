"""Who may read runs, and start, cancel or resume them: the rules in workflows.access, the
selectors of workflows.selectors_runs and the services of workflows.services.api."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import AnonymousUser, User

from tests.helpers import database_state, drive
from tests.review.conftest import T0
from workflows import services
from workflows.access import access_run_view, access_runs_manage, runs_visible_q
from workflows.errors import Conflict, InvalidInput, NotAllowed
from workflows.models import ReviewTask, Run, Workflow
from workflows.selectors_runs import (
    RunCursor,
    keyset_page,
    run_get,
    run_list,
    run_output,
    workflow_get,
    workflows_visible,
)
from workflows.services.api import run_cancel_as, run_resume_wait, run_start_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(wait_workflow: Workflow, system: services.Actor) -> Run:
    return drive(services.run_start(workflow=wait_workflow, input={"amount": 3}, actor=system))


def test_who_reads_a_run(
    run: Run,
    owner: User,
    reviewer: User,
    escalator: User,
    other_reviewer: User,
    outsider: User,
    superuser: User,
    wait_workflow: Workflow,
    escalators: object,
) -> None:
    wait_workflow.escalation_group = escalators  # type: ignore[assignment]
    wait_workflow.save()
    readers = {owner, reviewer, escalator, superuser}
    for user in (owner, reviewer, escalator, other_reviewer, outsider, superuser):
        sees = Run.objects.filter(runs_visible_q(user), pk=run.pk).exists()
        assert sees == (user in readers), user
        if user in readers:
            assert run_get(user=user, run_id=run.pk).run == run
            assert list(run_list(user=user)) == [run]
        else:
            with pytest.raises(NotAllowed, match="no such run, or you may not see it"):
                run_get(user=user, run_id=run.pk)
            assert list(run_list(user=user)) == []
    with pytest.raises(NotAllowed):
        access_run_view(user=AnonymousUser(), run=run)
    owner.is_active = False
    owner.save()
    assert not Run.objects.filter(runs_visible_q(owner)).exists()


def test_an_unknown_run_looks_like_one_out_of_reach(owner: User) -> None:
    with pytest.raises(NotAllowed, match="no such run, or you may not see it"):
        run_get(user=owner, run_id=10**12)


def test_within_narrows_and_never_widens(
    run: Run, owner: User, outsider: User, make_workflow: Callable[..., Workflow]
) -> None:
    other = make_workflow({"slug": "o", "name": "O", "steps": [{"id": "w", "kind": "wait"}]})
    other.admins.add(owner)
    assert run_get(user=owner, run_id=run.pk, within={run.workflow_id}).run == run
    with pytest.raises(NotAllowed):
        run_get(user=owner, run_id=run.pk, within={other.pk})
    assert list(run_list(user=owner, within={other.pk})) == []
    assert [wf.slug for wf in workflows_visible(user=owner, within={other.pk})] == ["o"]
    # A workflow the user has no role in stays out of reach, whatever `within` says.
    with pytest.raises(NotAllowed):
        run_get(user=outsider, run_id=run.pk, within={run.workflow_id})
    with pytest.raises(NotAllowed, match="no such workflow"):
        workflow_get(user=outsider, slug="expenses", within={run.workflow_id})


def test_keyset_pages_of_runs_cover_every_run_once(
    wait_workflow: Workflow, owner: User, system: services.Actor
) -> None:
    # Equal creation times: the id breaks the tie.
    runs = [
        services.run_start(workflow=wait_workflow, input={"amount": i}, actor=system, now=T0)
        for i in range(7)
    ]
    seen: list[int] = []
    after = None
    while True:
        rows, after = keyset_page(run_list(user=owner, after=after), size=3, cursor_of=RunCursor.of)
        seen += [r.pk for r in rows]
        if after is None:
            break
    assert seen == sorted((r.pk for r in runs), reverse=True)


def test_a_runs_output_is_its_last_steps_once_completed(run: Run, owner: User) -> None:
    detail = run_get(user=owner, run_id=run.pk)
    assert detail.output is None
    run_resume_wait(user=owner, run=run, actor=services.Actor.for_user(owner), outcome="ok")
    run = drive(run)
    detail = run_get(user=owner, run_id=run.pk)
    assert run.status == Run.Status.COMPLETED
    assert detail.output == {"booked": 3} == run_output(run, detail.steps)


def test_only_admins_start_cancel_and_resume(
    run: Run,
    wait_workflow: Workflow,
    owner: User,
    reviewer: User,
    outsider: User,
    superuser: User,
) -> None:
    for user in (reviewer, outsider):
        actor = services.Actor.for_user(user)
        before = database_state()
        with pytest.raises(NotAllowed, match="only the admins of workflow 'expenses'"):
            run_start_as(user=user, workflow=wait_workflow, input={"amount": 1}, actor=actor)
        with pytest.raises(NotAllowed):
            run_cancel_as(user=user, run=run, actor=actor)
        with pytest.raises(NotAllowed):
            run_resume_wait(user=user, run=run, actor=actor)
        assert database_state() == before
    assert access_runs_manage(user=superuser, workflow=wait_workflow) == wait_workflow
    started = run_start_as(
        user=owner,
        workflow=wait_workflow,
        input={"amount": 1},
        actor=services.Actor.for_user(owner),
    )
    assert started.started_by == owner
    assert run_cancel_as(user=owner, run=started, actor=services.Actor.for_user(owner)).status == (
        Run.Status.CANCELLED
    )


def test_start_on_a_version_number(wait_workflow: Workflow, owner: User) -> None:
    actor = services.Actor.for_user(owner)
    run = run_start_as(
        user=owner, workflow=wait_workflow, input={"amount": 1}, actor=actor, version=1
    )
    assert run.version.number == 1
    with pytest.raises(InvalidInput, match="has no version 2"):
        run_start_as(
            user=owner, workflow=wait_workflow, input={"amount": 1}, actor=actor, version=2
        )


def test_resuming_from_outside_is_for_wait_steps_only(
    task: ReviewTask, run: Run, owner: User
) -> None:
    actor = services.Actor.for_user(owner)
    before = database_state()
    with pytest.raises(Conflict, match="gate step 'check'"):
        run_resume_wait(user=owner, run=task.run, actor=actor, outcome="approved")
    with pytest.raises(Conflict, match="not waiting at step 'book'"):
        run_resume_wait(user=owner, run=run, actor=actor, step_id="book")
    with pytest.raises(InvalidInput, match="at most 32"):
        run_resume_wait(user=owner, run=run, actor=actor, outcome="x" * 33)
    assert database_state() == before
    resumed = run_resume_wait(user=owner, run=run, actor=actor, output={"ok": 1}, step_id="hold")
    assert resumed.pk == run.pk
    with pytest.raises(Conflict, match="is not waiting"):
        run_resume_wait(user=owner, run=run, actor=actor)
