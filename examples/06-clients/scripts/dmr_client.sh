#!/bin/sh
# Docker Model Runner's API with curl, as Docker's documentation calls it from a container
# (http://model-runner.docker.internal there, http://model-runner here).
set -eu
BASE=${MODEL_RUNNER_URL:-http://model-runner}
MODEL=${MODEL:-smollm2}

echo "models:"
curl -fsS "$BASE/models"
echo
echo "chat:"
curl -fsS "$BASE/engines/llama.cpp/v1/chat/completions" \
  -H 'Content-Type: application/json' \
  -d "{\"model\": \"$MODEL\", \"messages\": [{\"role\": \"user\", \"content\": \"Say hello in five words.\"}], \"max_tokens\": 32}"
echo
