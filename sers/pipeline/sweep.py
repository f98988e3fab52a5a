"""Runs in parallel for `sers train`: joblib over local processes (loky), a Dask or a Ray cluster."""
from __future__ import annotations

import os

from sers.errors import SersError
from sers.pipeline.options import BACKENDS



def run_all(run_one, specs, data, jobs, backend, progress) -> list[dict]:
    """``run_one(spec, data)`` for every spec, in the order of ``specs``, with a progress bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(specs), desc="training", unit="run", disable=not progress)
    if jobs == 1 and backend == "loky":
        results = []
        for spec in specs:
            results.append(run_one(spec, data))
            bar.update()
        bar.close()
        return results
    import joblib

    with backend_context(backend, jobs):
        # Results as each run finishes (for the progress bar) where the backend can; ray cannot.
        streams = joblib.parallel.get_active_backend()[0].supports_return_generator
        results = []
        for result in joblib.Parallel(return_as="generator_unordered" if streams else "list")(
                joblib.delayed(run_one)(spec, data) for spec in specs):
            results.append(result)
            bar.update()
    bar.close()
    order = {(s["method"], s["seed"], s["candidate"]): i for i, s in enumerate(specs)}
    return sorted(results, key=lambda r: order[(r["method"], r["seed"], r["candidate"])])


def backend_context(backend: str, jobs: int):
    """joblib's parallel_config for loky (local processes), dask or ray (clusters; imported lazily)."""
    import joblib

    if backend == "dask":
        try:
            from distributed import Client, get_client
        except ImportError:
            raise SersError("--backend dask needs dask.distributed: pip install 'sers-lam[dask]'") from None
        try:
            get_client()
        except ValueError:  # no client yet: connect to $DASK_SCHEDULER_ADDRESS, or start a local cluster
            Client(os.environ.get("DASK_SCHEDULER_ADDRESS"))
    elif backend == "ray":
        try:
            from ray.util.joblib import register_ray
        except ImportError:
            raise SersError("--backend ray needs ray: pip install 'sers-lam[ray]'") from None
        register_ray()
    return joblib.parallel_config(backend=backend, n_jobs=jobs)


