"""`modelfactory-operator`: run the operator against the current kubeconfig or in-cluster."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import kopf

from modelfactory_operator.handlers import kopf_handlers  # registers the handlers
from modelfactory_operator.handlers.reconciler import Reconciler
from modelfactory_operator.io.helm import Helm
from modelfactory_operator.io.kubernetes_launcher import KubernetesLauncher
from modelfactory_operator.io.launcher import Launcher
from modelfactory_operator.io.optional_watch import RAYJOBS, OptionalWatch
from modelfactory_operator.settings import OperatorSettings


def build_launcher(settings: OperatorSettings) -> Launcher:
    if settings.launcher == "local":
        from modelfactory_operator.io.local_launcher import LocalLauncher

        return LocalLauncher(settings.local_state_dir)
    helm = Helm(
        settings.helm_binary,
        concurrency=settings.helm_concurrency,
        timeout_seconds=settings.helm_timeout_seconds,
    )
    return KubernetesLauncher(helm, settings.charts_dir, settings.crd_cache_seconds)


def configure(settings: OperatorSettings, clusterwide: bool, namespaces: list[str]) -> None:
    @kopf.on.startup()
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = "modelfactory.dev/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="modelfactory.dev"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="modelfactory.dev", key="last-handled-configuration"
        )
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 60
        settings.peering.standalone = True
        memo.launcher = launcher
        memo.reconciler = Reconciler(app_settings, launcher)
        if hasattr(launcher, "start"):
            await launcher.start(memo.reconciler)
        memo.resync = asyncio.create_task(memo.reconciler.resync_forever())
        if settings_is_kubernetes:

            async def rayjob_changed(namespace: str, obj: dict[str, Any]) -> None:
                labels = (obj.get("metadata") or {}).get("labels") or {}
                await kopf_handlers.child_changed(labels, namespace, memo)

            memo.rayjob_watch = OptionalWatch(
                RAYJOBS,
                kopf_handlers.RAYJOB_SELECTOR,
                clusterwide,
                namespaces,
                rayjob_changed,
                asyncio.get_running_loop(),
            )
            memo.rayjob_watch.start()

    @kopf.on.cleanup()
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        if memo.get("resync") is not None:
            memo.resync.cancel()
        if memo.get("rayjob_watch") is not None:
            memo.rayjob_watch.stop()
        if hasattr(memo.get("launcher"), "stop"):
            await memo.launcher.stop()

    app_settings = settings
    settings_is_kubernetes = settings.launcher == "kubernetes"
    launcher = build_launcher(settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Model Factory operator")
    parser.add_argument(
        "--launcher",
        choices=["kubernetes", "local"],
        help="where workloads run (default: MF_LAUNCHER or kubernetes)",
    )
    parser.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)"
    )
    parser.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="watch every namespace (the default without --namespace)",
    )
    parser.add_argument(
        "--liveness-port",
        type=int,
        default=None,
        help="serve kopf's liveness probe at http://0.0.0.0:PORT/healthz",
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    overrides = {"launcher": args.launcher} if args.launcher else {}
    settings = OperatorSettings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s",'
        '"message":"%(message)s"}',
    )
    clusterwide = args.all_namespaces or not args.namespace
    configure(settings, clusterwide, list(args.namespace))
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    asyncio.run(
        kopf.operator(
            clusterwide=clusterwide,
            namespaces=[] if clusterwide else list(args.namespace),
            liveness_endpoint=liveness,
            standalone=True,
        )
    )


if __name__ == "__main__":
    main()
