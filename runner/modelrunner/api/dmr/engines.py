"""DMR engine routes: ``/engines/status``, ``/engines/ps``, ``/engines/unload`` and ``_configure``.

There is one backend, ``llama.cpp`` (llama-cpp-python in process). ``_configure`` keeps a per-model
runtime configuration in memory, as DMR does: it is lost on restart and does not change the stored
runtime policy (``/runner/policies``). Its context size and ``--parallel`` flag become the core's
per-model overrides, which win over the stored policy until the runner restarts, the model is
unloaded through ``/engines/unload``, or its policy is set again. ``--embeddings`` selects
embedding mode, ``keep_alive`` applies to the runner the background preload creates. Other allowed
llama.cpp flags are validated and recorded but have no llama-cpp-python equivalent here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shlex
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelrunner.api.common import inference, read_json, services
from modelrunner.api.dmr.wire import DMRRoute
from modelrunner.core.inference import InferenceService
from modelrunner.durations import FOREVER, parse_keep_alive
from modelrunner.errors import Conflict, InvalidName, InvalidRequest, ModelNotFound, NotFound
from modelrunner.names import Dialect
from modelrunner.store.records import ModelRecord

router = APIRouter(route_class=DMRRoute)
log = logging.getLogger(__name__)
BACKEND = "llama.cpp"
ZERO_TIME = "0001-01-01T00:00:00Z"
M = TypeVar("M", bound=BaseModel)

# DMR's llama.cpp allowlist (pkg/inference/runtime_flags_allowlist.go); flags naming files are
# excluded there, and any value containing a path separator is refused.
_FLAGS = """
-t --threads -tb --threads-batch -C --cpu-mask -Cr --cpu-range --cpu-strict --prio --poll
-Cb --cpu-mask-batch -Crb --cpu-range-batch --cpu-strict-batch --prio-batch --poll-batch
-c --ctx-size -n --predict --n-predict --keep -b --batch-size -ub --ubatch-size --swa-full
-fa --flash-attn --perf --no-perf --samplers -s --seed --temp --temperature --top-k --top-p
--min-p --top-nsigma --xtc-probability --xtc-threshold --typical --repeat-last-n
--repeat-penalty --presence-penalty --frequency-penalty --dry-multiplier --dry-base
--dry-allowed-length --dry-penalty-last-n --mirostat --mirostat-lr --mirostat-ent
--ignore-eos --dynatemp-range --dynatemp-exp -dev --device -ngl --gpu-layers --n-gpu-layers
-sm --split-mode -ts --tensor-split -mg --main-gpu -fit --fit -fitt --fit-target -fitc
--fit-ctx -kvo --kv-offload -nkvo --no-kv-offload --repack -nr --no-repack --no-host -ctk
--cache-type-k -ctv --cache-type-v --mlock --mmap --no-mmap -dio --direct-io -ndio
--no-direct-io -cram --cache-ram -kvu --kv-unified --context-shift --no-context-shift
--rope-scaling --rope-scale --rope-freq-base --rope-freq-scale --yarn-orig-ctx
--yarn-ext-factor --yarn-attn-factor --yarn-beta-slow --yarn-beta-fast -np --parallel -cb
--cont-batching -nocb --no-cont-batching --warmup --no-warmup -to --timeout --threads-http
--cache-prompt --no-cache-prompt --cache-reuse --sleep-idle-seconds --mmproj-auto --no-mmproj
--no-mmproj-auto --mmproj-offload --no-mmproj-offload --image-min-tokens --image-max-tokens
--spm-infill --draft --draft-n --draft-max --draft-min --draft-n-min --draft-p-min -cd
--ctx-size-draft -devd --device-draft -ngld --gpu-layers-draft --n-gpu-layers-draft -td
--threads-draft -tbd --threads-batch-draft --lora-init-without-apply
--control-vector-layer-range --grammar -j --json-schema -bs --backend-sampling
--chat-template --chat-template-kwargs --jinja --no-jinja --pooling --reasoning-format
--reasoning-budget --prefill-assistant --no-prefill-assistant --api-prefix --webui --no-webui
--webui-config --api-key --metrics --no-metrics --props --slots --no-slots --embedding
--embeddings --rerank --reranking -sps --slot-prompt-similarity -cmoe --cpu-moe -ncmoe
--n-cpu-moe --check-tensors --op-offload --no-op-offload -v --verbose
"""
ALLOWED_FLAGS = frozenset(_FLAGS.split())


class DMRRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


class ConfigureRequest(DMRRequest):
    model: str = ""
    mode: str | None = None
    context_size: int | None = Field(default=None, alias="context-size")
    runtime_flags: list[str] | None = Field(default=None, alias="runtime-flags")
    raw_runtime_flags: str | None = Field(default=None, alias="raw-runtime-flags")
    keep_alive: str | int | float | None = None


class UnloadRequest(DMRRequest):
    all: bool = False
    backend: str = ""
    models: list[str] | None = None


@dataclass
class RunnerConfig:
    """One ``_configure`` call's settings, listed by ``GET /engines/_configure``."""

    model: str
    model_id: str
    mode: str
    context_size: int | None = None
    runtime_flags: list[str] = field(default_factory=list)
    keep_alive: str | int | float | None = None

    def entry(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.context_size is not None:
            config["context-size"] = self.context_size
        if self.runtime_flags:
            config["runtime-flags"] = self.runtime_flags
        if self.keep_alive is not None:
            config["keep_alive"] = self.keep_alive
        return {
            "Backend": BACKEND,
            "Model": self.model,
            "ModelID": self.model_id,
            "Mode": self.mode,
            "Config": config,
        }


@dataclass
class EngineState:
    """Per-app state of these routes: configurations and running background preloads."""

    configs: dict[tuple[str, str], RunnerConfig] = field(default_factory=dict)
    preloads: set[asyncio.Task[None]] = field(default_factory=set)


# -- pure helpers --------------------------------------------------------------------------------


def check_flags(flags: list[str]) -> None:
    """DMR's rules: every ``-flag`` on the allowlist, no ``/`` or ``\\`` anywhere. Negative
    numbers are values (``--seed -1``), which DMR itself would reject as unknown flags."""
    for flag in flags:
        key = flag.split("=", 1)[0] if flag.startswith("-") and not _is_number(flag) else ""
        if key and key not in ALLOWED_FLAGS:
            raise InvalidRequest(f'runtime flag "{key}" is not allowed for backend "{BACKEND}"')
    for flag in flags:
        if "/" in flag or "\\" in flag:
            raise InvalidRequest(
                f"invalid runtime flag {flag!r}: paths are not allowed (contains '/' or '\\\\')"
            )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def flag_int(flags: list[str], names: tuple[str, ...]) -> int | None:
    """The integer value of the last of ``names`` in ``flags`` (``-c 512`` or ``--ctx-size=512``)."""
    value: str | None = None
    for i, flag in enumerate(flags):
        key, eq, inline = flag.partition("=")
        if key in names:
            value = inline if eq else (flags[i + 1] if i + 1 < len(flags) else "")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"invalid value for {names[-1]}: {value!r}") from None


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration`` text (``5m0s``, ``1h0m0s``, ``1.5s``); ``-1`` for forever."""
    if seconds == FOREVER or math.isinf(seconds):
        return "-1"
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- request plumbing ----------------------------------------------------------------------------


def state(request: Request) -> EngineState:
    extra = services(request).extra
    if "dmr_engines" not in extra:
        extra["dmr_engines"] = EngineState()
    value: EngineState = extra["dmr_engines"]
    return value


async def parse(request: Request, model: type[M]) -> M:
    """DMR answers every undecodable body with a bare ``invalid request``."""
    try:
        data = await read_json(request)
        return model.model_validate(data)
    except (InvalidRequest, ValidationError):
        raise InvalidRequest("invalid request") from None


async def record_of(request: Request, ref: str) -> ModelRecord | None:
    try:
        return await services(request).models.get(ref, Dialect.DMR)
    except (ModelNotFound, InvalidName):
        return None


# -- routes --------------------------------------------------------------------------------------


@router.get("/engines/status")
async def status() -> dict[str, str]:
    try:
        engine_version = version("llama-cpp-python")
    except PackageNotFoundError:  # pragma: no cover - the runner extra installs it
        engine_version = "unknown"
    return {BACKEND: f"Running: llama.cpp {engine_version}"}


@router.get("/engines/ps")
async def running(request: Request) -> list[dict[str, Any]]:
    scheduler = inference(request).scheduler
    mono, wall = scheduler.clock(), time.time()
    out = []
    for runner in scheduler.loaded():
        record = runner.details.get("record")
        name = record.display(Dialect.DMR) if isinstance(record, ModelRecord) else runner.name
        in_use = not runner.idle
        keep_alive = math.inf if scheduler.pinned(runner) else runner.keep_alive
        out.append(
            {
                "backend_name": BACKEND,
                "model_name": name,
                "mode": runner.mode,
                "last_used": ZERO_TIME if in_use else rfc3339(wall - (mono - runner.last_used)),
                "in_use": in_use,
                "loading": False,
                "keep_alive": go_duration(keep_alive),
                # Ours, after DMR's fields (its clients ignore unknown ones): the effective
                # runtime settings (see /runner/policies).
                "context_size": runner.model.context_length,
                "parallel": runner.options.parallel,
                "pinned": scheduler.pinned(runner),
            }
        )
    return out


@router.post("/engines/unload")
async def unload(request: Request) -> dict[str, int]:
    body = await parse(request, UnloadRequest)
    if body.backend not in ("", BACKEND):
        return {"unloaded_runners": 0}
    engines = state(request)
    svc = inference(request)
    digests: set[str] | None = None
    if not body.all:
        records = [await record_of(request, ref) for ref in body.models or []]
        digests = {r.digest for r in records if r is not None}
    count = await svc.scheduler.unload_idle(digests)
    for key in list(engines.configs):
        if digests is None or key[0] in digests:
            del engines.configs[key]
    for overrides in (svc.context_overrides, svc.parallel_overrides):
        for digest in list(overrides):
            if digests is None or digest in digests:
                del overrides[digest]
    return {"unloaded_runners": count}


@router.post("/engines/_configure")
@router.post("/engines/{backend}/_configure")
async def configure(request: Request) -> Response:
    if request.path_params.get("backend", BACKEND) != BACKEND:
        raise NotFound("backend not found")
    body = await parse(request, ConfigureRequest)
    if not body.model:
        raise InvalidRequest("model is required")
    flags = list(body.runtime_flags or [])
    if body.raw_runtime_flags:
        lexer = shlex.shlex(body.raw_runtime_flags, posix=True)
        lexer.whitespace_split, lexer.escape = True, ""  # a backslash stays: it may be a path
        try:
            flags += list(lexer)
        except ValueError as exc:
            raise InvalidRequest(f"invalid raw-runtime-flags: {exc}") from None
    check_flags(flags)
    if body.mode not in (None, "completion", "embedding"):
        raise InvalidRequest(f"invalid mode {body.mode!r}: must be completion or embedding")
    embedding = body.mode == "embedding" or any(f in ("--embedding", "--embeddings") for f in flags)
    context = body.context_size or flag_int(flags, ("-c", "--ctx-size"))
    if context is not None and context < -1:
        raise InvalidRequest(f"invalid context size {context}")
    ceiling = inference(request).defaults.max_context
    if context is not None and ceiling and context > ceiling:
        raise InvalidRequest(
            f"context size {context} is larger than this runner allows ({ceiling})"
        )
    parallel = flag_int(flags, ("-np", "--parallel"))
    keep_alive = parse_keep_alive(body.keep_alive, lenient=True)
    record = await record_of(request, body.model)
    if record is None:
        raise NotFound(f"model {body.model!r} not found")
    svc = inference(request)
    if any(r.digest == record.digest and not r.idle for r in svc.scheduler.runners.values()):
        raise Conflict("runner already active")
    if context is not None:
        unlimited = record.context_length or svc.defaults.context_size
        svc.context_overrides[record.digest] = unlimited if context == -1 else context
    if parallel is not None and parallel > 0:
        svc.parallel_overrides[record.digest] = parallel
    mode = "embedding" if embedding else "completion"
    state(request).configs[(record.digest, mode)] = RunnerConfig(
        body.model, record.manifest.digest, mode, context, flags, body.keep_alive
    )
    task = asyncio.create_task(_preload(svc, body.model, keep_alive, embedding))
    preloads = state(request).preloads
    preloads.add(task)
    task.add_done_callback(preloads.discard)
    return Response(status_code=202)


async def _preload(
    svc: InferenceService, ref: str, keep_alive: float | None, embedding: bool
) -> None:
    try:
        await svc.preload(ref, Dialect.DMR, keep_alive, embedding=embedding)
    except Exception as exc:
        log.warning("background preload of %s failed: %s", ref, exc)


@router.get("/engines/_configure")
async def configurations(request: Request) -> list[dict[str, Any]]:
    svc = inference(request)
    configs = state(request).configs
    for key, config in list(configs.items()):
        # A runtime policy set since (PUT /runner/policies) replaced this configuration.
        overridden = svc.context_overrides.get(key[0]) or svc.parallel_overrides.get(key[0])
        if config.context_size is not None and not overridden:
            del configs[key]
    entries = list(configs.items())
    ref = request.query_params.get("model")
    if ref:
        record = await record_of(request, ref)
        if record is None:
            return []
        entries = [(k, v) for k, v in entries if k[0] == record.digest]
    return [config.entry() for _, config in entries]
