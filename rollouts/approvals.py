"""The approval policy of rollouts: who may lift it, which gates a rollout gets, who may approve.

With `FLEET_ROLLOUT_APPROVAL_POLICY` on (the production default) every rollout waits for an approval
before its first wave changes any site and again between waves, under the two-person rule, unless its
plan is marked low-risk by a person holding `rollouts.mark_low_risk`. The mark is checked when it is set
(the permission) and again when a rollout starts (whoever set it must still hold the permission), and
any later change to the plan or to its release clears it: what was judged low-risk is what runs.

Under the two-person rule (the plan's own, or the policy's) the approver is a person who is none of:
who started the rollout (for a scheduled start, who created the plan), the plan's last editor when it
started, the release's author or its last editor. A plan's own `require_approval` without the policy
keeps its old meaning: a gate between waves, approved by anyone with `rollouts.approve_rollout`.

The gates are decided at start and kept in the rollout's plan snapshot, so the driver (and a worker
with other settings) applies what the rollout started with.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record
from fleet.errors import Forbidden
from fleet.permissions import is_person, require_perm
from rollouts.models import Release, Rollout, RolloutPlan

MARK_LOW_RISK = "rollouts.mark_low_risk"


def policy_on() -> bool:
    return bool(getattr(settings, "FLEET_ROLLOUT_APPROVAL_POLICY", False))


# --- the low-risk mark ------------------------------------------------------------------------------


def low_risk_mark(*, plan: RolloutPlan, actor: Actor) -> None:
    """Record that `actor` marks the (unsaved or locked) plan low-risk. Forbidden unless a person with
    rollouts.mark_low_risk: a system actor vouches for nothing."""
    try:
        if not is_person(actor):
            raise Forbidden("a system actor vouches for nothing")
        require_perm(actor, MARK_LOW_RISK)
    except Forbidden as exc:
        raise Forbidden(
            f"marking a plan low-risk, or keeping the mark while changing the plan, needs a person with the "
            f"{MARK_LOW_RISK} permission (leave low_risk false otherwise)",
            field="low_risk",
        ) from exc
    plan.low_risk = True
    plan.low_risk_by = actor  # type: ignore[assignment]  # a person (is_person above), any AUTH_USER_MODEL
    plan.low_risk_at = timezone.now()


def low_risk_unmark(plan: RolloutPlan) -> None:
    plan.low_risk, plan.low_risk_by, plan.low_risk_at = False, None, None


def low_risk_clear_for_release(*, release: Release, actor: Actor, source: Source) -> int:
    """A changed release is no longer what was judged low-risk: clear the mark of every plan naming it
    (audited per plan). Call inside the transaction that changes the release. Returns how many."""
    plans: QuerySet[RolloutPlan] = RolloutPlan.objects.select_for_update().filter(release=release, low_risk=True)
    count = 0
    for plan in plans:
        low_risk_unmark(plan)
        plan.save(update_fields=["low_risk", "low_risk_by", "low_risk_at", "updated_at"])
        audit_record(
            actor=actor,
            verb="clear_low_risk",
            obj=plan,
            source=source,
            payload={"reason": f"release {release} changed"},
        )
        count += 1
    return count


def low_risk_holds(plan: RolloutPlan) -> bool:
    """Whether the plan's low-risk mark counts now: set by a person who still holds the permission."""
    user = plan.low_risk_by
    return bool(plan.low_risk and user is not None and user.is_active and user.has_perm(MARK_LOW_RISK))


# --- gates at start ---------------------------------------------------------------------------------


def gates_at_start(plan: RolloutPlan) -> dict[str, Any]:
    """What a rollout of `plan` started now must pass, for its plan snapshot."""
    policy = policy_on()
    low_risk = low_risk_holds(plan)
    gated = policy and not low_risk
    return {
        "approval_policy": policy,
        "low_risk": low_risk,
        "approve_first_wave": gated,
        "require_approval": plan.require_approval or gated,
        "two_person_rule": plan.two_person_rule or gated,
        "plan_last_edited_by": plan.last_edited_by_id,
    }


# --- who may approve --------------------------------------------------------------------------------


def excluded_approvers(rollout: Rollout) -> list[tuple[int, str]]:
    """(user id, why) of everyone the two-person rule keeps from approving this rollout."""
    plan, release = rollout.plan, rollout.release
    excluded: list[tuple[int | None, str]] = [
        (rollout.started_by_id, "started this rollout"),
        (rollout.plan_snapshot.get("plan_last_edited_by"), f"last edited plan {plan.name} before it started"),
        (plan.last_edited_by_id, f"last edited plan {plan.name}"),
        (release.created_by_id, f"wrote release {release}"),
        (release.last_edited_by_id, f"last edited release {release}"),
    ]
    if rollout.started_by_id is None:  # a scheduled start: the plan's creator set it going
        excluded.append((plan.created_by_id, f"created plan {plan.name}, which started this rollout on schedule"))
    return [(user_id, why) for user_id, why in excluded if user_id is not None]


def check_approver(*, rollout: Rollout, actor: Actor) -> None:
    """Forbidden (403) with the reason when the rollout's two-person rule refuses `actor` as approver."""
    if not rollout.plan_snapshot.get("two_person_rule"):
        return
    if not isinstance(actor, AbstractBaseUser):
        raise Forbidden("the two-person rule needs a person to approve, not an automated actor")
    for user_id, why in excluded_approvers(rollout):
        if user_id == actor.pk:
            raise Forbidden(
                f"the two-person rule: {actor.get_username()} {why}; someone else with "
                "rollouts.approve_rollout must approve it"
            )
