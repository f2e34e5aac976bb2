"""One training run, from configuration to a reported result."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

from sklearn.base import is_classifier

from modelfactory_api.runtime import TrainingRuntimeConfig
from modelfactory_api.trainingjob import (
    ModelRef,
    TrainingProgress,
    TrainingResult,
    TrainingSpec,
)
from modelfactory_artifacts.metadata import ArtifactMetadata, TrialRecord
from modelfactory_artifacts.profile import ReferenceProfile, build_profile
from modelfactory_training.artifact import build_metadata, serialize
from modelfactory_training.cluster import ClusterInfo, ray_session
from modelfactory_training.data import load_data
from modelfactory_training.errors import SpecError, TrainingError, TransientError
from modelfactory_training.estimator import (
    resolve_estimator,
    supports_n_jobs,
    validate_model_params,
)
from modelfactory_training.gate import gate_metric, gate_scores, result_baseline
from modelfactory_training.metrics import held_out_metrics, resolve_metric
from modelfactory_training.onnx_export import compile_model
from modelfactory_training.pipeline import (
    MAX_CATEGORIES,
    MODEL_STEP,
    build_pipeline,
    encoded_width,
)
from modelfactory_training.prepare import Prepared, frame_bytes, prepare
from modelfactory_training.report import Reporter
from modelfactory_training.search import (
    SearchLimits,
    SearchOutcome,
    fold_memory,
    plan_parallelism,
    run_search,
)
from modelfactory_training.search_space import SearchPlan, build_plan, candidates
from modelfactory_training.store import ModelStore, storage_failure
from modelfactory_training.trial import ModelRecipe

log = logging.getLogger(__name__)


def result_from_metadata(run_id: str, metadata: ArtifactMetadata, uri: str) -> TrainingResult:
    ran = len(metadata.trials)
    failed = sum(1 for t in metadata.trials if t.status == "failed")
    scores = [t.score for t in metadata.trials if t.score is not None]
    best = metadata.metrics.get("cv_mean", max(scores) if scores else None)
    return TrainingResult(
        runId=run_id,
        succeeded=True,
        model=ModelRef(version=metadata.version, uri=uri, digest=metadata.digest),
        metric=metadata.metric,
        metrics=metadata.metrics,
        bestParams=metadata.bestParams,
        trigger=metadata.trigger,
        dataDigest=metadata.dataDigest,
        score=metadata.gate.score if metadata.gate else None,
        baseline=result_baseline(metadata.gate),
        progress=TrainingProgress(
            trialsTotal=max(metadata.trialsPlanned or 0, ran),
            trialsCompleted=ran - failed,
            trialsFailed=failed,
            trialsSkipped=max((metadata.trialsPlanned or ran) - ran, 0),
            bestScore=best,
            rayNodes=len({node for t in metadata.trials for node in t.nodes}),
        ),
    )


def no_result_error(outcome: SearchOutcome, budget: int | None = None) -> TrainingError:
    """Why a search ended without a scored configuration."""
    if outcome.budget_spent and not outcome.trials:
        return SpecError(
            "TimeBudgetSpent",
            f"tuning.timeBudgetSeconds: the {budget} s budget ran out before any of the "
            f"{outcome.planned} trials finished; raise it or make the trials cheaper",
        )
    return all_failed_error(outcome)


def all_failed_error(outcome: SearchOutcome) -> TrainingError:
    first = next((t.error for t in outcome.trials if t.error), "no error recorded")
    message = f"all {len(outcome.trials)} trials failed; first error: {first}"
    if outcome.infra_failures == len(outcome.trials):
        # Every trial died in Ray itself (a lost worker, out of memory): worth retrying.
        return TransientError("AllTrialsFailed", message)
    return SpecError("AllTrialsFailed", message)


def refit(
    prepared: Prepared,
    estimator_cls: Any,
    params: dict[str, Any],
    *,
    preprocessing: bool,
    n_jobs: int | None,
    use_ray_joblib: bool,
    seed: int | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> Any:
    """The best configuration fitted on the whole training split, using every CPU it can."""
    if n_jobs is not None:
        params = {**params, "n_jobs": n_jobs}
    pipeline = build_pipeline(
        estimator_cls,
        params,
        preprocessing=preprocessing,
        numeric=prepared.numeric,
        categorical=prepared.categorical,
        seed=seed,
        max_categories=max_categories,
    )
    context: Any = nullcontext()
    if use_ray_joblib:
        import joblib
        from ray.util.joblib import register_ray

        register_ray()
        context = joblib.parallel_backend("ray", n_jobs=n_jobs)
    with context:
        pipeline.fit(prepared.X_train, prepared.y_train)
    if n_jobs is not None:
        # The stored model should not carry this cluster's CPU count into serving.
        pipeline.named_steps[MODEL_STEP].set_params(n_jobs=None)
    return pipeline


@dataclass(frozen=True)
class CheckedSpec:
    """What the spec resolves to, checked before any data is read or compute spent."""

    estimator_cls: Any
    classifier: bool
    metric: str
    plan: SearchPlan
    owns_n_jobs: bool
    gate_metric: str  # the search metric unless the promotion gate names its own


def check_config(config: TrainingRuntimeConfig) -> CheckedSpec:
    """check_spec, plus the promotion gate's scorer."""
    checked = check_spec(config.spec)
    return replace(checked, gate_metric=gate_metric(config.gateMetric, checked.metric))


def check_spec(spec: TrainingSpec) -> CheckedSpec:
    estimator_cls = resolve_estimator(spec.model.estimator)
    classifier = is_classifier(estimator_cls())
    metric = resolve_metric(spec.tuning.metric, classifier)
    plan = build_plan(spec.tuning)
    validate_model_params(estimator_cls, spec.model.params, candidates(spec.tuning))
    # n_jobs is ours to size unless the user fixed or searches it.
    owns_n_jobs = (
        supports_n_jobs(estimator_cls)
        and "n_jobs" not in spec.model.params
        and "n_jobs" not in spec.tuning.searchSpace
    )
    return CheckedSpec(estimator_cls, classifier, metric, plan, owns_n_jobs, metric)


def share_training_split(prepared: Prepared) -> tuple[Prepared, Any]:
    """Put the training split into Ray's object store once and keep only that copy.

    The fold tasks read it there; the driver's own copy is replaced by a read-only view of the
    stored one (numeric columns are not copied out), so the split is held once, not twice. The
    view is valid only while Ray runs: everything that reads it happens inside the session.
    """
    import ray

    ref = ray.put((prepared.X_train, prepared.y_train))
    X_train, y_train = ray.get(ref)
    return replace(prepared, X_train=X_train, y_train=y_train), ref


def search_and_refit(
    spec: TrainingSpec,
    checked: CheckedSpec,
    prepared: Prepared,
    data: Any,
    reporter: Reporter,
    cluster: ClusterInfo,
) -> tuple[SearchOutcome, TrialRecord, Any]:
    """Run the search on Ray and fit the best configuration on the whole training split."""
    parallelism = plan_parallelism(
        total_trials=checked.plan.total_trials,
        folds=spec.tuning.cvFolds,
        requested=spec.tuning.parallelTrials,
        cluster_cpus=cluster.cpus,
        largest_node_cpus=cluster.largest_node_cpus,
        multithreaded=checked.owns_n_jobs,
    )
    max_categories = spec.model.maxCategories
    memory = fold_memory(
        data_bytes=frame_bytes(prepared.X_train),
        rows=len(prepared.X_train),
        width=encoded_width(
            prepared.X_train,
            prepared.numeric,
            prepared.categorical,
            preprocessing=spec.model.preprocessing,
            max_categories=max_categories,
        ),
        folds=spec.tuning.cvFolds,
        node_memory=cluster.largest_node_memory,
    )
    log.info(
        "search starting",
        extra={
            "cluster_cpus": cluster.cpus,
            "nodes": cluster.nodes,
            "concurrent_trials": parallelism.concurrent_trials,
            "cpus_per_fold": parallelism.cpus_per_fold,
            "fold_memory_bytes": memory,
            "time_budget_s": spec.tuning.timeBudgetSeconds,
        },
    )
    outcome = run_search(
        data,
        prepared.X_train,
        prepared.y_train,
        classifier=checked.classifier,
        recipe=ModelRecipe(
            estimator=spec.model.estimator,
            preprocessing=spec.model.preprocessing,
            numeric=prepared.numeric,
            categorical=prepared.categorical,
            scoring=checked.metric,
            seed=spec.dataset.seed,
            max_categories=max_categories,
        ),
        fixed_params=dict(spec.model.params),
        estimator_n_jobs=parallelism.cpus_per_fold if checked.owns_n_jobs else None,
        plan=checked.plan,
        parallelism=parallelism,
        folds=spec.tuning.cvFolds,
        seed=spec.dataset.seed,
        sink=reporter.progress,
        limits=SearchLimits(time_budget_s=spec.tuning.timeBudgetSeconds, fold_memory_bytes=memory),
    )
    best = outcome.best_trial
    if best is None:
        raise no_result_error(outcome, spec.tuning.timeBudgetSeconds)
    model = refit(
        prepared,
        checked.estimator_cls,
        {**spec.model.params, **best.params},
        preprocessing=spec.model.preprocessing,
        n_jobs=_refit_jobs(cluster) if checked.owns_n_jobs else None,
        use_ray_joblib=checked.owns_n_jobs and cluster.nodes > 1,
        seed=spec.dataset.seed,
        max_categories=max_categories,
    )
    return outcome, best, model


def reference_profile(prepared: Prepared, model: Any, spec_seed: int) -> ReferenceProfile:
    """The training split's profile, with the model's predictions on the held-out split."""
    target_kind = "numeric" if prepared.task == "regression" else "categorical"
    predictions = model.predict(prepared.X_test) if len(prepared.X_test) else None
    return build_profile(
        prepared.X_train,
        {f.name: "numeric" if f.kind == "numeric" else "categorical" for f in prepared.features},
        target=prepared.y_train,
        target_kind=target_kind,
        predictions=predictions,
        seed=spec_seed,
    )


def write_version(
    config: TrainingRuntimeConfig,
    store: ModelStore,
    checked: CheckedSpec,
    prepared: Prepared,
    outcome: SearchOutcome,
    best: TrialRecord,
    model: Any,
    data_digest: str | None = None,
) -> ArtifactMetadata:
    metrics = {"cv_mean": float(best.score or 0.0), "cv_std": float(best.scoreStd or 0.0)}
    metrics.update(
        held_out_metrics(model, prepared.X_test, prepared.y_test, prepared.task, checked.metric)
    )
    # Before the version exists: the gate's comparison is part of what the run records.
    gate = gate_scores(
        model,
        prepared.X_test,
        prepared.y_test,
        task=prepared.task,
        metric=checked.gate_metric,
        baseline=config.baseline,
    )
    model_bytes, _ = serialize(model)
    compiled = compile_model(model, prepared.X_test, prepared.features, checked.classifier)
    log.info("onnx", extra={"status": compiled.info.status, "reason": compiled.info.reason})
    classes = getattr(model, "classes_", None) if prepared.task != "regression" else None
    try:
        version = store.reserve(config.runId)
        metadata = build_metadata(
            version=version,
            model_bytes=model_bytes,
            task=prepared.task,
            features=prepared.features,
            target=prepared.target,
            classes=list(classes) if classes is not None else None,
            estimator=config.spec.model.estimator,
            metric=checked.metric,
            metrics=metrics,
            best_params=best.params,
            trials=outcome.trials,
            trials_planned=outcome.planned,
            profile=reference_profile(prepared, model, spec_seed=config.spec.dataset.seed),
            job=config.job,
            run_id=config.runId,
            trigger=config.trigger,
            data_digest=data_digest,
            gate=gate,
            onnx=compiled.info,
        )
        store.write(version, model_bytes, metadata, compiled.data)
    except Exception as exc:
        failure = storage_failure(store.uri, exc, "write", "output")
        if failure is None:
            raise
        raise failure from exc
    return metadata


def train(config: TrainingRuntimeConfig, reporter: Reporter) -> TrainingResult:
    """Train and write a version, or report the version this run already wrote."""
    spec = config.spec
    started = time.monotonic()
    store = ModelStore.open(spec.output.storageUri)
    try:
        existing = store.find_run(config.runId)
    except Exception as exc:
        failure = storage_failure(store.uri, exc, "list", "output")
        if failure is None:
            raise
        raise failure from exc
    if existing is not None:
        log.info("run already wrote a version", extra={"version": existing.version})
        return result_from_metadata(config.runId, existing, store.version_uri(existing.version))

    checked = check_config(config)
    loaded = load_data(spec.dataset)
    data_digest = loaded.digest
    prepared = prepare(
        loaded.frame,
        spec.dataset,
        is_classifier=checked.classifier,
        preprocessing=spec.model.preprocessing,
        cv_folds=spec.tuning.cvFolds,
    )
    # The split holds its own rows: the whole frame need not live through the search.
    del loaded
    log.info(
        "data ready",
        extra={
            "rows_train": len(prepared.y_train),
            "rows_test": len(prepared.y_test),
            "features": len(prepared.features),
            "task": prepared.task,
            "trials": checked.plan.total_trials,
            "data_digest": data_digest,
        },
    )
    with ray_session(config.ray) as cluster:
        prepared, data = share_training_split(prepared)
        outcome, best, model = search_and_refit(spec, checked, prepared, data, reporter, cluster)
        # Inside the session: the training split is a view of Ray's object store.
        metadata = write_version(
            config, store, checked, prepared, outcome, best, model, data_digest
        )
        del prepared, data
    uri = store.version_uri(metadata.version)
    log.info(
        "model written",
        extra={
            "uri": uri,
            "digest": metadata.digest,
            "seconds": round(time.monotonic() - started, 2),
        },
    )
    return result_from_metadata(config.runId, metadata, uri)


def _refit_jobs(cluster: ClusterInfo) -> int:
    return cluster.cpus if cluster.nodes > 1 else cluster.largest_node_cpus
