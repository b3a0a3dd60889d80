"""A real Open Inference Protocol server for the tests: KServe's own Python ModelServer
(``pip install kserve``), serving a TorchScript classifier on a port, run as a subprocess.

Test knobs, none of which changes what a successful answer holds:

* ``--fail-rate P`` answers a share P of infer requests 503 (KServe's ModelNotReady);
  ``--latency S`` sleeps up to S seconds before each answer (seeded);
* ``--swap-file F`` serves ``--alt-model`` instead while file F exists (a vendor that
  redeploys mid-audit);
* ``--counts F`` writes the infer requests and images it answered (and refused) to F, as
  JSON, after every request; ``--token-env V``: answer 401 unless the request carries
  ``Authorization: Bearer $V``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput, ModelNotReady


class TorchClassifier(Model):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args.name)
        self.args = args
        self.main = torch.jit.load(args.model).eval()
        self.alt = torch.jit.load(args.alt_model).eval() if args.alt_model else None
        self.rng = random.Random(args.seed)
        self.counts = {"requests": 0, "images": 0, "refused": 0, "unauthorised": 0}
        self.token = os.environ.get(args.token_env) if args.token_env else None
        self.ready = True

    def get_input_types(self) -> list[dict]:
        c, h, w = self.args.shape
        return [{"name": "image", "datatype": "FP32", "shape": [-1, c, h, w]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": self.args.output_name, "datatype": "FP32", "shape": [-1, self.args.classes]}]

    def _save(self) -> None:
        if self.args.counts:
            tmp = Path(self.args.counts + ".tmp")
            tmp.write_text(json.dumps(self.counts))
            os.replace(tmp, self.args.counts)

    async def predict(self, payload: InferRequest, headers: dict | None = None,
                      response_headers: dict | None = None) -> InferResponse:
        if self.token is not None and (headers or {}).get("authorization") != f"Bearer {self.token}":
            self.counts["unauthorised"] += 1
            self._save()
            raise InvalidInput("missing or wrong bearer token")
        if self.args.latency:
            await asyncio.sleep(self.rng.uniform(0, self.args.latency))
        if self.rng.random() < self.args.fail_rate:
            self.counts["refused"] += 1
            self._save()
            raise ModelNotReady(self.name, "injected fault")
        x = torch.from_numpy(np.ascontiguousarray(payload.inputs[0].as_numpy(), dtype=np.float32))
        swapped = self.alt is not None and self.args.swap_file and os.path.exists(self.args.swap_file)
        with torch.no_grad():
            out = (self.alt if swapped else self.main)(x).numpy().astype(np.float32)
        self.counts["requests"] += 1
        self.counts["images"] += int(x.shape[0])
        self._save()
        output = InferOutput(name=self.args.output_name, shape=list(out.shape), datatype="FP32", data=out)
        return InferResponse(response_id="0", model_name=self.name, infer_outputs=[output])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--alt-model")
    parser.add_argument("--name", default="classifier")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--shape", type=int, nargs=3, required=True)
    parser.add_argument("--classes", type=int, required=True)
    parser.add_argument("--output-name", default="logits")
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--swap-file")
    parser.add_argument("--counts")
    parser.add_argument("--token-env")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sys.argv = sys.argv[:1]  # KServe parses the command line for its own options too
    ModelServer(http_port=args.port, enable_grpc=False, workers=1,
                enable_latency_logging=False).start([TorchClassifier(args)])


if __name__ == "__main__":
    main(sys.argv[1:])
