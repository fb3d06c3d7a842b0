"""OpenAI's official Python client. It reads OPENAI_BASE_URL (here http://model-runner/engines/v1,
Docker Model Runner's path; http://model-runner/v1 works too) and OPENAI_API_KEY (not checked)."""

import os

from openai import OpenAI

model = os.environ.get("MODEL", "smollm2")
client = OpenAI()

print("models:", [m.id for m in client.models.list()])
reply = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Say hello in five words."}],
    max_tokens=32,
)
print("chat:", reply.choices[0].message.content)
print("stream: ", end="")
stream = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Count to three."}], max_tokens=8, stream=True
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
