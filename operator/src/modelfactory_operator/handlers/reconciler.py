"""Read the resource, decide with pure logic, act through a launcher, write the status back."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

import kopf

from modelfactory_api.modelservice import MODELSERVICE_PLURAL
from modelfactory_api.trainingjob import TRAININGJOB_PLURAL
from modelfactory_operator.io import kube
from modelfactory_operator.io.launcher import Launcher
from modelfactory_operator.logic import modelservice as mslogic
from modelfactory_operator.logic import storage, validate
from modelfactory_operator.logic import trainingjob as tjlogic
from modelfactory_operator.logic.plans import Decision, RunObservation, ServiceObservation
from modelfactory_operator.settings import OperatorSettings

log = logging.getLogger("modelfactory.operator")
# kopf keeps its own bookkeeping under status; the operator leaves it alone.
FOREIGN_STATUS_KEYS = ("kopf",)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new` at the top level of status."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in FOREIGN_STATUS_KEYS and old.get(key) != value:
            patch[key] = value
    for key in old:
        if key not in new and key not in FOREIGN_STATUS_KEYS:
            patch[key] = None
    return patch


def emit(body: dict[str, Any], decision: Decision) -> None:
    for kind, reason, message in decision.events:
        try:
            kopf.event(
                body,  # type: ignore[arg-type]
                type=kind,
                reason=reason,
                message=message[:1000],
            )
        except Exception:  # events are best effort; outside a handler context there is no queue
            log.info("event %s/%s %s: %s", body["metadata"]["name"], kind, reason, message)


class Reconciler:
    def __init__(self, settings: OperatorSettings, launcher: Launcher) -> None:
        self.settings = settings
        self.launcher = launcher
        self.locks: defaultdict[tuple[str, str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def report_kind(self) -> str:
        return "kubernetes"

    @property
    def mount_root(self) -> str:
        """Where pvc:// claims appear to workloads: mounted in pods, a directory locally."""
        if self.launcher.name == "local":
            return str(self.settings.local_state_dir / "pvc")
        return storage.CLUSTER_MOUNT_ROOT

    async def trainingjob(self, namespace: str, name: str) -> None:
        async with self.locks[("tj", namespace, name)]:
            body = await asyncio.to_thread(kube.get_trainingjob, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return
            meta = body["metadata"]
            status = dict(body.get("status") or {})
            spec_error = plan = None
            try:
                spec = validate.trainingjob_spec(body.get("spec") or {}, self.launcher.name)
                plan = tjlogic.render(
                    body, spec, self.settings.training_image, self.report_kind, self.mount_root
                )
            except validate.SpecError as exc:
                spec_error = str(exc)
            observation = (
                await self.launcher.observe_training(plan) if plan else RunObservation("absent")
            )
            rayjob_ok = True
            if plan is not None and plan.mode == "rayjob":
                rayjob_ok = await self.launcher.rayjob_available()
            decision = tjlogic.decide(
                meta.get("generation"), status, plan, spec_error, observation, rayjob_ok, now()
            )
            launch = self.launcher.launch_training(plan) if decision.launch and plan else None
            await self.act(TRAININGJOB_PLURAL, body, decision, launch, plan.hash if plan else "")
        if status.get("history") != decision.status.get("history"):
            await self.followers(namespace, name)

    async def followers(self, namespace: str, trainingjob: str) -> None:
        services = await asyncio.to_thread(kube.list_modelservices, namespace)
        for ms in mslogic.following(services, trainingjob):
            try:
                await self.modelservice(namespace, ms["metadata"]["name"])
            except Exception:
                log.exception(
                    "updating ModelService %s after a new model failed", ms["metadata"]["name"]
                )

    async def modelservice(self, namespace: str, name: str) -> None:
        async with self.locks[("msvc", namespace, name)]:
            body = await asyncio.to_thread(kube.get_modelservice, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return
            meta = body["metadata"]
            status = dict(body.get("status") or {})
            spec_error = None
            resolved: mslogic.ResolvedModel | mslogic.Unresolved | None = None
            plan = None
            try:
                spec = validate.modelservice_spec(body.get("spec") or {}, self.launcher.name)
            except validate.SpecError as exc:
                spec_error = str(exc)
            else:
                trainingjob = None
                if spec.model.trainingJob:
                    trainingjob = await asyncio.to_thread(
                        kube.get_trainingjob, namespace, spec.model.trainingJob
                    )
                resolved = mslogic.resolve_model(spec, trainingjob)
                if isinstance(resolved, mslogic.ResolvedModel):
                    plan = mslogic.render(
                        body, spec, resolved, self.settings.serving_image, self.mount_root
                    )
            observation = (
                await self.launcher.observe_service(namespace, name)
                if spec_error is None
                else ServiceObservation(exists=False)
            )
            decision = mslogic.decide(
                meta.get("generation"), status, spec_error, resolved, plan, observation, now()
            )
            launch = self.launcher.apply_service(plan) if decision.launch and plan else None
            await self.act(MODELSERVICE_PLURAL, body, decision, launch, plan.hash if plan else "")

    async def act(
        self,
        plural: str,
        body: dict[str, Any],
        decision: Decision,
        launch: Coroutine[Any, Any, int | None] | None,
        plan_hash: str,
    ) -> None:
        """Launch when decided, then write the status and the events of the transition."""
        if launch is not None:
            revision = await launch
            decision.status["appliedHash"] = plan_hash
            if revision is not None:
                decision.status["releaseRevision"] = revision
        meta = body["metadata"]
        patch = status_patch(dict(body.get("status") or {}), decision.status)
        if patch:
            await asyncio.to_thread(
                kube.patch_status, plural, meta["namespace"], meta["name"], patch
            )
        emit(body, decision)
