"""Triton client backend: a Segmenter whose network (or whole pipeline) runs in a Triton server.

``open_segmenter("localhost:8001", backend="triton")`` connects over gRPC (``grpc://`` or port
8001), or HTTP (``http://`` or port 8000), reads the model's config from the server and takes
the ModelMeta from its ``edgeseg.meta`` parameter (written by ``edgeseg export --format
triton``), so classes, palette and input size need no flags.

Two kinds of model, told apart by their input:

* a network model (float ``input`` (N, 3, h, w)): :meth:`TritonSegmenter.infer` sends the
  preprocessed batch, so ``run``, ``bench`` and calibrate's comparison use the server exactly
  like a local backend;
* an image model (uint8 ``image``: the Python ``segment`` model or the ``--triton-pipeline``
  ensemble): :meth:`TritonSegmenter.preprocess` is the RGB frame itself, ``infer`` sends it and
  receives the labels at the frame's size, so the same preprocess -> infer -> postprocess chain
  (``run``'s pipeline) works; a float network input is refused with a one-line error.

Clients are bounded: a network timeout on every call and a cap on the request size.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edgeseg.artifacts.files import META_KEY
from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.runtime.base import ModelMeta, Segmenter

__all__ = ["DEFAULT_URL", "MAX_REQUEST_BYTES", "TritonSegmenter", "parse_url"]

DEFAULT_URL = "localhost:8001"
MAX_REQUEST_BYTES = 256 << 20
META_PARAM = META_KEY  # the model config parameter the export writes (deploy/triton.py)
_NP_TO_TRITON = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16",
                 np.dtype(np.uint8): "UINT8", np.dtype(np.int32): "INT32"}
_TRITON_TO_NP = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_UINT8": np.uint8,
                 "TYPE_INT32": np.int32}


def parse_url(url: str) -> tuple[str, str]:
    """``grpc://host:port`` / ``http://host:port`` / ``host:port`` -> (protocol, host:port).
    Without a scheme, port 8000 means HTTP and anything else gRPC (Triton's default ports)."""
    text = url.strip()
    for scheme in ("grpc", "http"):
        if text.startswith(f"{scheme}://"):
            return scheme, text[len(scheme) + 3:].rstrip("/")
    if "://" in text:
        raise EdgesegError(f"--url {url}: expected grpc://HOST:PORT, http://HOST:PORT or HOST:PORT")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise EdgesegError(f"--url {url}: expected HOST:PORT, e.g. {DEFAULT_URL}")
    return ("http" if port == "8000" else "grpc"), text


class TritonSegmenter(Segmenter):
    """A Segmenter that sends its frames to a Triton server.

    Args:
        url: server address (see :func:`parse_url`).
        model: model name; default: the one edgeseg model on the server that clients call
            (a network model, the ``segment`` model or an ensemble; not pre/post steps).
        protocol: ``grpc`` or ``http``; default from the URL.
        timeout_s: network timeout of every call.
        token: sent as ``Authorization: Bearer TOKEN`` (for a gateway in front of Triton).
    """

    backend = "triton"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        model: str | None = None,
        protocol: str | None = None,
        timeout_s: float = 30.0,
        token: str | None = None,
    ) -> None:
        proto, address = parse_url(url)
        proto = protocol or proto
        if proto not in ("grpc", "http"):
            raise EdgesegError(f"protocol: expected grpc or http, got {proto!r}")
        self.url, self.protocol, self.timeout_s = address, proto, float(timeout_s)
        self.headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            if proto == "grpc":
                import tritonclient.grpc as client_mod
            else:
                import tritonclient.http as client_mod
        except ImportError:
            raise MissingDependencyError(
                f"tritonclient ({proto})", "pip install 'edgeseg[triton]'"
            ) from None
        self._mod = client_mod
        self._errors: tuple[type[BaseException], ...] = (
            client_mod.InferenceServerException, OSError, ConnectionError)
        try:
            if proto == "grpc":
                self.client = client_mod.InferenceServerClient(address)
                live = self.client.is_server_live(headers=self.headers,
                                                  client_timeout=self.timeout_s)
            else:
                self.client = client_mod.InferenceServerClient(
                    address, connection_timeout=self.timeout_s, network_timeout=self.timeout_s)
                live = self.client.is_server_live(headers=self.headers)
        except self._errors as e:
            raise EdgesegError(f"Triton server at {address} ({proto}) unreachable: {_msg(e)}") from None
        if not live:
            raise EdgesegError(f"Triton server at {address} is not live")
        self.model = model or self._pick_model()
        cfg = self._config(self.model)
        params = {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}
        if META_PARAM not in params:
            raise EdgesegError(f"model {self.model} on {address} has no '{META_PARAM}' parameter: "
                               "write its repository with `edgeseg export --format triton`")
        meta = ModelMeta.from_dict(json.loads(params[META_PARAM]))
        self.max_batch_size = int(cfg.get("max_batch_size", 0))
        (inp,) = cfg["input"]
        self.input_name, self.input_type = inp["name"], inp["data_type"]
        outs = [o["name"] for o in cfg["output"]]
        self.output_name = "labels" if "labels" in outs else outs[0]
        self.takes_images = self.input_type == "TYPE_UINT8"
        self.input_dtype = _TRITON_TO_NP.get(self.input_type, np.float32)
        super().__init__(meta)

    # -- server queries ----------------------------------------------------------------------

    def _config(self, name: str) -> dict[str, Any]:
        try:
            if self.protocol == "grpc":
                got = self.client.get_model_config(name, headers=self.headers, as_json=True,
                                                   client_timeout=self.timeout_s)
                cfg = dict(got.get("config", got))
                # gRPC's JSON spells int64 as strings and enums by name; normalise to HTTP's.
                cfg["max_batch_size"] = int(cfg.get("max_batch_size", 0))
            else:
                cfg = self.client.get_model_config(name, headers=self.headers)
        except self._errors as e:
            raise EdgesegError(f"model {name!r} on {self.url}: {_msg(e)}") from None
        for t in (*cfg.get("input", []), *cfg.get("output", [])):
            t.setdefault("data_type", "TYPE_FP32")
        return dict(cfg)

    def _pick_model(self) -> str:
        try:
            if self.protocol == "grpc":
                index = self.client.get_model_repository_index(
                    headers=self.headers, as_json=True, client_timeout=self.timeout_s
                ).get("models", [])
            else:
                index = self.client.get_model_repository_index(headers=self.headers)
        except self._errors as e:
            raise EdgesegError(f"Triton server at {self.url}: {_msg(e)}") from None
        ready = [m["name"] for m in index if m.get("state") == "READY"]
        callable_ = []
        for name in ready:
            cfg = self._config(name)
            params = {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}
            if META_PARAM in params and params.get("stage") not in ("preprocess", "postprocess"):
                callable_.append((name, cfg))
        # An ensemble's network model is a step of it: name the ensemble, not its parts.
        steps = {s["model_name"] for _, cfg in callable_
                 for s in cfg.get("ensemble_scheduling", {}).get("step", [])}
        names = [n for n, _ in callable_ if n not in steps]
        if len(names) != 1:
            found = ", ".join(names) if names else "none"
            raise EdgesegError(f"Triton server at {self.url}: give --triton-model (edgeseg models: {found})")
        return names[0]

    # -- inference ---------------------------------------------------------------------------

    def _request(self, array: np.ndarray) -> np.ndarray:
        if array.nbytes > MAX_REQUEST_BYTES:
            raise EdgesegError(f"request of {array.nbytes >> 20} MiB exceeds the "
                               f"{MAX_REQUEST_BYTES >> 20} MiB limit")
        mod = self._mod
        x = mod.InferInput(self.input_name, list(array.shape), _NP_TO_TRITON[array.dtype])
        x.set_data_from_numpy(array)
        kw: dict[str, Any] = {"headers": self.headers}
        if self.protocol == "grpc":
            kw["client_timeout"] = self.timeout_s
            out = [mod.InferRequestedOutput(self.output_name)]
        else:
            out = [mod.InferRequestedOutput(self.output_name, binary_data=True)]
        try:
            result = self.client.infer(self.model, [x], outputs=out, **kw)
        except self._errors as e:
            raise EdgesegError(f"Triton {self.model}: {_msg(e)}") from None
        return np.asarray(result.as_numpy(self.output_name))

    def preprocess(self, bgr: np.ndarray, size_hw: tuple[int, int] | None = None) -> np.ndarray:
        """Network model: the shared preprocessing. Image model: the frame itself, RGB uint8
        (1, H, W, 3); the server preprocesses (and returns labels at the frame's size)."""
        if not self.takes_images:
            return super().preprocess(bgr, size_hw)
        return np.ascontiguousarray(bgr[:, :, ::-1])[None]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.takes_images:
            if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
                raise EdgesegError(
                    f"Triton model {self.model} takes images (uint8 N x H x W x 3 RGB), not "
                    f"network inputs {batch.dtype} {tuple(batch.shape)}: point --triton-model at "
                    "the network model (<name>_net) for those"
                )
            return np.concatenate([self._request(batch[i:i + 1]) for i in range(len(batch))])
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        if self.max_batch_size == 0 or len(batch) <= self.max_batch_size:
            return self._request(batch)
        step = self.max_batch_size
        return np.concatenate([self._request(batch[i:i + step]) for i in range(0, len(batch), step)])

    def describe(self) -> dict[str, Any]:
        try:
            meta = self.client.get_server_metadata(headers=self.headers)
            server = meta.get("version") if isinstance(meta, dict) else meta.version
        except self._errors:
            server = None
        return {"backend": self.backend, "url": self.url, "protocol": self.protocol,
                "model": self.model, "takes_images": self.takes_images,
                "max_batch_size": self.max_batch_size, "triton": server,
                "precision": self.meta.precision}

    def statistics(self) -> dict[str, Any]:
        """The server's inference statistics of this model (as JSON)."""
        if self.protocol == "grpc":
            return dict(self.client.get_inference_statistics(self.model, headers=self.headers,
                                                             as_json=True))
        return dict(self.client.get_inference_statistics(self.model, headers=self.headers))

    def close(self) -> None:
        self.client.close()


def _msg(e: BaseException) -> str:
    text = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
    return " ".join(str(text).split())[:300]
