"""The Ray Data pipeline of a scoring run: read, predict per actor, stream back.

The files are read by Ray Data (only the features and carried columns; a CSV's columns with
the types the schema check fixed), in order, and handed `batchSize` rows at a time to a pool of
actors, each of which loads the model once through `load_artifact` (the same digest and
allow-list as the driver) and predicts. The driver iterates the scored blocks as they come
(`iter_batches`, bounded by Ray Data's backpressure): the input is never held whole anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from modelfactory_training.batch.inputs import InputSet
from modelfactory_training.batch.model import BatchModel, RuntimeChoice, load_model

log = logging.getLogger(__name__)

PATH_COLUMN = "path"  # what Ray Data's include_paths adds
FILE_COLUMN = "_file"  # the input file's index, for the progress
BLOCK_BYTES = 32 * 1024 * 1024
# Logical CPUs of a read task: reading a block costs a fraction of predicting it.
READ_CPUS = 0.5


class Scorer:
    """The per-actor callable: the model loaded once, then one batch at a time."""

    def __init__(
        self,
        model_uri: str,
        digest: str,
        runtime: RuntimeChoice,
        want_proba: bool,
        keep: Sequence[str],
        paths: Sequence[str],
    ) -> None:
        self.model = BatchModel(load_model(model_uri, digest, runtime), runtime)
        self.want_proba = want_proba
        self.keep = list(keep)
        self.paths = pa.array(list(paths), type=pa.string())

    def __call__(self, table: pa.Table) -> pa.Table:
        try:
            outputs = self.model.predict(table, self.want_proba)
        except Exception as exc:
            # Raised in an actor, it reaches the driver as text: the marker names the reason.
            raise RuntimeError(f"PredictionFailed: {type(exc).__name__}: {exc}") from None
        columns: dict[str, Any] = {name: table.column(name) for name in self.keep}
        columns.update(self.model.output_columns(outputs))
        if PATH_COLUMN in table.column_names:
            path = table.column(PATH_COLUMN)
            columns[FILE_COLUMN] = pc.index_in(path, value_set=self.paths).cast(pa.int32())
        return pa.table(columns)


def configure_data_context() -> None:
    import ray.data

    # Ray Data logs every execution's start and end at INFO.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # carried rows come out in input order
    ctx.target_max_block_size = BLOCK_BYTES
    for name in ("enable_progress_bars", "print_on_execution_start"):
        if hasattr(ctx, name):
            setattr(ctx, name, False)


def actors_for(cpus: int) -> tuple[int, float]:
    """(actors, CPUs per actor): an actor per CPU, half a CPU left to the read tasks, so that
    predicting (the larger part) uses every core while reading overlaps it."""
    if cpus <= 1:
        return 1, 0.5
    return cpus, (cpus - READ_CPUS) / cpus


def build(
    inputs: InputSet,
    model: BatchModel,
    model_uri: str,
    digest: str,
    runtime: RuntimeChoice,
    carry: Sequence[str],
    want_proba: bool,
    batch_size: int,
    cpus: int,
) -> Any:
    import ray.data

    configure_data_context()
    features = model.feature_names
    columns = list(dict.fromkeys([*features, *carry]))
    actors, actor_cpus = actors_for(cpus)
    read_cpus = READ_CPUS
    if inputs.format == "parquet":
        ds = ray.data.read_parquet(
            inputs.paths,
            filesystem=_arrow_fs(inputs.fs),
            columns=columns,
            include_paths=True,
            num_cpus=read_cpus,
        )
    else:
        ds = ray.data.read_csv(
            inputs.paths,
            filesystem=_arrow_fs(inputs.fs),
            include_paths=True,
            convert_options=pacsv.ConvertOptions(
                column_types=inputs.column_types,
                include_columns=columns,
                strings_can_be_null=True,
            ),
            num_cpus=read_cpus,
        )
    keep = list(dict.fromkeys([*features, *carry]))
    return ds.map_batches(
        Scorer,
        fn_constructor_kwargs={
            "model_uri": model_uri,
            "digest": digest,
            "runtime": runtime,
            "want_proba": want_proba,
            "keep": keep,
            "paths": inputs.paths,
        },
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
        num_cpus=actor_cpus,
    )


def _arrow_fs(fs: Any) -> Any:
    """The input's fsspec filesystem as Ray Data takes it: local paths need none."""
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        return None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(fs))


def stream(ds: Any) -> Iterator[pa.Table]:
    """The scored blocks, in order, as they are produced."""
    yield from ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1)
