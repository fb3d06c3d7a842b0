"""Ollama's official Python client. It reads OLLAMA_HOST (here http://model-runner:11434)."""

import os

from ollama import Client

model = os.environ.get("MODEL", "smollm2")
client = Client()

print("models:", [m.model for m in client.list().models])
reply = client.chat(
    model=model,
    messages=[{"role": "user", "content": "Say hello in five words."}],
    options={"num_predict": 32},
)
print("chat:", reply.message.content)
print("stream: ", end="")
for part in client.generate(model=model, prompt="One, two,", stream=True, options={"num_predict": 8}):
    print(part.response, end="", flush=True)
print()
