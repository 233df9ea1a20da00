# The two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP  := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed

.PHONY: scale-out run test config-docs lint typecheck unit integration bench bench-correlation bench-floor bench-load bench-load-hour bench-tenants bench-executor-memory bench-kb demo system-deps flowchart evals-live clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "installing rcaflow and its dependencies into $(VENV) (again only when pyproject.toml changes)"
	$(BIN)/pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(RUN_STAMP)

## run: create .venv, install, run rcaflow on the embedded broker until Ctrl-C
# The default tenant is read-only until it has namespaces (docs/policies.md); on a laptop, with the
# executor's dry run, it may act on every namespace unless you set its namespaces yourself.
run: $(RUN_STAMP)
	RCAFLOW_TENANTS__DEFAULT__NAMESPACES="$${RCAFLOW_TENANTS__DEFAULT__NAMESPACES:-[\"*\"]}" $(BIN)/rcaflow run

## demo: feed the bundled sample mails through the whole pipeline and print what happened
demo: $(RUN_STAMP)
	$(BIN)/rcaflow demo

## system-deps: Debian packages the tests use (dovecot for IMAP; Java 17 + Maven for the embedded Kafka)
system-deps:
	bash .ci/system-deps.sh

## test: install everything the tests need and run lint, types and the whole suite
test: $(TEST_STAMP) system-deps lint typecheck
	$(BIN)/pytest

## config-docs: regenerate docs/configuration.md, rcaflow.example.yaml and .env.example from the Settings model
config-docs: $(RUN_STAMP)
	$(BIN)/python -m streams.settings_reference

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

unit: $(TEST_STAMP)
	$(BIN)/pytest tests/unit

integration: $(TEST_STAMP) system-deps
	$(BIN)/pytest tests/integration

## bench: push sample mails through the pipeline on the embedded broker; writes benchmarks/results.json
bench: $(TEST_STAMP) system-deps
	$(BIN)/python -m benchmarks.bench_parse --out benchmarks/results.json
	$(BIN)/python -m benchmarks.pipeline_bench --out benchmarks/results.json
	$(BIN)/python -m benchmarks.webhook_bench --out benchmarks/results.json
	$(BIN)/python -m benchmarks.rca_bench --out benchmarks/results.json
	$(BIN)/python -m benchmarks.bench_imap --out benchmarks/results.json
	$(BIN)/python -m benchmarks.bench_imap --server cyrus --out benchmarks/results.json

## bench-correlation: the labelled alert corpus through parsers, dedup and correlation; results.json "correlation"
bench-correlation: $(TEST_STAMP)
	$(BIN)/python -m benchmarks.correlation_bench --out benchmarks/results.json

## bench-floor: the worker vs a trivial Faust chain with the same hops and record sizes (ratio), plus a py-spy
## profile of the worker under the backlog; results.json "floor", docs/performance.md
bench-floor: $(TEST_STAMP) system-deps
	$(BIN)/python -m benchmarks.floor_bench --profile build/profile/worker-backlog.txt --out benchmarks/results.json

## bench-load: sustained load, 4,000 mails/min for 5 min over 5 tenants (70% repeats), then 80% of the capacity it
## measured; lag, throughput and RSS over time, latency per stage; results.json "load", benchmarks/load-*.png
bench-load: $(TEST_STAMP) system-deps
	$(BIN)/python -m benchmarks.load_bench --label overload --rate 4000 --minutes 5 --out benchmarks/results.json
	$(BIN)/python -m benchmarks.load_bench --label at_80pct --rate-of-capacity 0.8 --minutes 5 --out benchmarks/results.json

## bench-load-hour: 600 mails/min for 60 min over 5 tenants (70% repeats) with short retention (prune margin 5 min,
## policy windows/cooldowns/approval TTLs capped at 5 min, prune tick every minute): the worker's RSS slope over the
## second half and its table rows over time; results.json "load" -> "hour", benchmarks/load-hour.png
LOAD_HOUR_MINUTES ?= 60
LOAD_HOUR_LABEL ?= hour
bench-load-hour: $(TEST_STAMP) system-deps
	$(BIN)/python -m benchmarks.load_bench --label $(LOAD_HOUR_LABEL) --rate 600 --minutes $(LOAD_HOUR_MINUTES) \
		--sample-every 10 --cap-policy-times 5m --env RCAFLOW_WORKER__PRUNE_MARGIN_S=300 \
		--env RCAFLOW_WORKER__OPEN_INCIDENT_KEEP_HOURS=0.1 --env RCAFLOW_NOTIFY__KEEP_HOURS=0.1 \
		--env RCAFLOW_NOTIFY__PRUNE_INTERVAL_S=60 --out benchmarks/results.json

## bench-executor-memory: the executor alone on the embedded broker, fed rounds of actions and sampled once caught up:
## RSS per started action (full and 20 s ledger window), per rejected approval, records/s; results.json
## "executor_memory", docs/performance.md (≈ 6 min)
bench-executor-memory: $(TEST_STAMP) system-deps
	$(BIN)/python -m benchmarks.executor_memory_bench --out benchmarks/results.json

## bench-kb: the knowledge-base and analytics consumers catching up on a backlog of 1,000 incident lifecycles into a real
## Elasticsearch, on topics of 3 and of 12 partitions: records/s; results.json "kb", docs/knowledge-base.md (≈ 2 min)
bench-kb: $(TEST_STAMP) system-deps
	$(BIN)/python -m benchmarks.kb_bench --out benchmarks/results.json

## bench-tenants: one tenant at 10x its ingest quota, api + worker: the quiet tenants' latency to rca-result calm vs
## storm (/events and /webhook), throttled counts, dead letters; results.json "tenant_quota", docs/tenants.md
bench-tenants: $(TEST_STAMP) system-deps
	$(BIN)/python -m benchmarks.tenant_quota_bench --seconds 25 --quota 120 --out benchmarks/results.json
	$(BIN)/python -m benchmarks.tenant_quota_bench --seconds 25 --quota 600 --out benchmarks/results.json

## scale-out: only the scale-out case (3 workers, kill -9 + join mid-load; also part of `make test`), e.g. to repeat it
scale-out: $(TEST_STAMP) system-deps
	$(BIN)/pytest tests/faults/test_scale_out.py -p no:cacheprovider

## runbooks: regenerate docs/runbooks/ from policies/remediation_policies.yaml and policies/runbook_guidance/
runbooks: $(RUN_STAMP)
	$(BIN)/python -m policies.runbooks

## flowchart: render docs/aiops-email-rca-flowchart.{svg,png} from docs/flowchart/*.dot (Debian's graphviz)
flowchart:
	@command -v dot >/dev/null || { echo "flowchart: needs graphviz's dot (make system-deps, or apt-get install graphviz)" >&2; exit 2; }
	dot -Tsvg docs/flowchart/aiops-email-rca-flowchart.dot -o docs/aiops-email-rca-flowchart.svg
	dot -Tpng -Gdpi=90 docs/flowchart/aiops-email-rca-flowchart.dot -o docs/aiops-email-rca-flowchart.png

## evals-live: the eval cases against a real Qwen2.5-Coder-0.5B on llama-server; writes benchmarks/results.json
evals-live: $(TEST_STAMP)
	bash .ci/llm-deps.sh
	$(BIN)/python -m benchmarks.evals_live --out benchmarks/results.json
	RCAFLOW_LIVE_MODEL_GATE=1 RCAFLOW_LIVE_EVIDENCE_ROUND=1 CI=true $(BIN)/pytest tests/integration/llm_real -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
