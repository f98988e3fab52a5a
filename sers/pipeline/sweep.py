"""Runs in parallel for `sers train`: joblib over local processes (loky), a Dask or a Ray cluster."""
from __future__ import annotations

import os

from sers.errors import SersError
from sers.jsonfile import is_integer, shown
from sers.pipeline.options import BACKENDS

# What a sweep may ask for, refused with one line before anything is read: past these a typo
# (--seeds 0-100000000, --jobs 1000) costs minutes of starting processes or hours of training
# before anyone notices, and no study needs more.
MAX_SEEDS = 2000
MAX_SEED = 2**32 - 1        # what numpy's and torch's generators take alike
JOBS_PER_CORE = 4           # local processes (loky): each run already uses its share of the cores
MAX_RUNS = 10_000           # runs (methods x candidates x seeds) in one sweep, one folder each


def check_seeds(seeds) -> list[int]:
    """Distinct integers from 0 to MAX_SEED, at most MAX_SEEDS of them (a repeated seed would train
    into the folder of the first)."""
    seeds = list(seeds)
    if not seeds:
        raise SersError("--seeds: no seed given; write e.g. 0-4 or 0,7")
    if len(seeds) > MAX_SEEDS:
        raise SersError(f"--seeds: {len(seeds)} seeds, at most {MAX_SEEDS} (each trains every method); "
                        "write e.g. 0-4")
    for seed in seeds:
        if not is_integer(seed) or not 0 <= seed <= MAX_SEED:
            raise SersError(f"--seeds: {shown(seed)} is not a seed (an integer from 0 to {MAX_SEED})")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1}) if len(set(seeds)) < len(seeds) else []
    if repeated:
        raise SersError(f"--seeds: seed {repeated[0]} is given twice (one run folder per seed)")
    return [int(s) for s in seeds]


def max_jobs(backend: str) -> int | None:
    """How many runs may train at once here: None on a cluster (dask, ray), whose size is not ours to know."""
    return JOBS_PER_CORE * (os.cpu_count() or 1) if backend == "loky" else None


def check_jobs(jobs, backend: str) -> int:
    if not is_integer(jobs) or jobs < 1:
        raise SersError(f"--jobs must be a whole number of at least 1, not {shown(jobs)}")
    most = max_jobs(backend)
    if most is not None and jobs > most:
        raise SersError(f"--jobs {jobs}: at most {most} on this machine ({os.cpu_count() or 1} cores x "
                        f"{JOBS_PER_CORE}); more processes only take longer to start")
    return int(jobs)


def check_run_count(n_runs: int) -> None:
    if n_runs > MAX_RUNS:
        raise SersError(f"this sweep trains {n_runs} runs (methods x candidates x seeds), at most {MAX_RUNS}; "
                        "give fewer seeds, --lambda values or --anchors files")



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


