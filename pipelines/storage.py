"""The data root: where raw drops, staged partitions, models and reports live.

A local folder by default, or ``s3://bucket/prefix`` (boto3; ``PIPELINES_S3_ENDPOINT`` for S3-compatible
stores). Paths inside it are stage-first, partition-second (``raw/piwik_track/dt=2017-04-01/...``).
Writers publish with write-then-rename locally and single PUTs on S3, so a reader never sees half a file.
Heavy readers (DuckDB) work on local paths; :meth:`DataRoot.local_dir` mirrors an S3 prefix into a cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.settings import get_settings


class DataRoot:
    """A local or S3 root with the few operations the pipelines need."""

    def __init__(self, uri: str | None = None) -> None:
        self.uri = (uri or get_settings().data_root).rstrip("/")
        parts = urlsplit(self.uri)
        self.is_s3 = parts.scheme == "s3"
        if self.is_s3:
            self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        else:
            self.base = Path(self.uri)

    def __repr__(self) -> str:
        return f"DataRoot({self.uri!r})"

    # ------------------------------------------------------------------ helpers
    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}".lstrip("/")

    def _s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=os.environ.get("PIPELINES_S3_ENDPOINT") or None)

    # ------------------------------------------------------------------ API
    def join(self, *parts: str) -> str:
        """The URI of a path under the root."""
        return "/".join([self.uri, *parts])

    def exists(self, rel: str) -> bool:
        if not self.is_s3:
            return (self.base / rel).exists()
        resp = self._s3().list_objects_v2(Bucket=self.bucket, Prefix=self._key(rel), MaxKeys=1)
        return resp.get("KeyCount", 0) > 0

    def list(self, rel_dir: str) -> list[str]:
        """Relative paths of the files directly under ``rel_dir``, sorted."""
        if not self.is_s3:
            folder = self.base / rel_dir
            return sorted(f"{rel_dir}/{p.name}" for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        paginator = self._s3().get_paginator("list_objects_v2")
        prefix = self._key(rel_dir).rstrip("/") + "/"
        keys = [obj["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
                for obj in page.get("Contents", [])]
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[strip:] for k in keys)

    def put_file(self, local: Path, rel: str) -> str:
        """Publish a finished local file at ``rel`` (atomic replace); returns its URI."""
        if self.is_s3:
            self._s3().upload_file(str(local), self.bucket, self._key(rel))
        else:
            dest = self.base / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
            shutil.copyfile(local, tmp)
            os.replace(tmp, dest)
        return self.join(rel)

    def put_bytes(self, data: bytes, rel: str) -> str:
        with tempfile.NamedTemporaryFile(delete=False) as tmp:
            tmp.write(data)
        try:
            return self.put_file(Path(tmp.name), rel)
        finally:
            os.unlink(tmp.name)

    def put_dir(self, local: Path, rel_dir: str, last: str | None = None) -> str:
        """Publish a finished local folder (flat) at ``rel_dir``, replacing what was there.

        Locally the folder is moved next to its destination and swapped in by renames (no copy of large
        model files, no half folder visible); on S3 each file is one PUT (``last``, e.g. a summary readers
        start from, goes up after the others) and stale files are removed after.
        """
        if self.is_s3:
            names = {p.name for p in local.iterdir() if p.is_file()}
            for path in sorted(local.iterdir(), key=lambda p: (p.name == last, p.name)):
                if path.is_file():
                    self.put_file(path, f"{rel_dir}/{path.name}")
            for rel in self.list(rel_dir):
                if Path(rel).name not in names:
                    self._s3().delete_object(Bucket=self.bucket, Key=self._key(rel))
            return self.join(rel_dir)
        dest = self.base / rel_dir
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = dest.with_name(f".{dest.name}.new-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.move(str(local), staging)
        trash = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if dest.exists():
            os.replace(dest, trash)
        os.replace(staging, dest)
        shutil.rmtree(trash, ignore_errors=True)
        return self.join(rel_dir)

    def list_dirs(self, rel_dir: str) -> list[str]:
        """Names of the sub-folders directly under ``rel_dir``, sorted."""
        if not self.is_s3:
            folder = self.base / rel_dir
            return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
                if folder.is_dir() else []
        paginator = self._s3().get_paginator("list_objects_v2")
        prefix = self._key(rel_dir).rstrip("/") + "/"
        found = {cp["Prefix"][len(prefix):].rstrip("/")
                 for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
                 for cp in page.get("CommonPrefixes", [])}
        return sorted(found)

    def read_bytes(self, rel: str) -> bytes:
        if not self.is_s3:
            return (self.base / rel).read_bytes()
        return self._s3().get_object(Bucket=self.bucket, Key=self._key(rel))["Body"].read()

    def local_dir(self, rel_dir: str) -> Path:
        """A local folder holding the files under ``rel_dir`` (the folder itself when the root is local)."""
        if not self.is_s3:
            return self.base / rel_dir
        cache = get_settings().home / "cache" / self.bucket / self._key(rel_dir)
        cache.mkdir(parents=True, exist_ok=True)
        s3 = self._s3()
        for rel in self.list(rel_dir):
            s3.download_file(self.bucket, self._key(rel), str(cache / Path(rel).name))
        return cache

    def put_tree(self, local: Path, rel_dir: str) -> str:
        """Publish a finished local folder *with sub-folders* at ``rel_dir``: locally one swap of the whole tree
        (:meth:`put_dir`), on S3 one PUT per file."""
        if not self.is_s3:
            return self.put_dir(local, rel_dir)
        for path in sorted(local.rglob("*")):
            if path.is_file():
                self.put_file(path, f"{rel_dir}/{path.relative_to(local).as_posix()}")
        return self.join(rel_dir)

    def local_tree(self, rel_dir: str) -> Path:
        """A local folder holding everything under ``rel_dir``, sub-folders included (the folder itself when the
        root is local; on S3 downloaded into the cache)."""
        if not self.is_s3:
            return self.base / rel_dir
        cache = get_settings().home / "cache" / self.bucket / self._key(rel_dir)
        s3 = self._s3()
        prefix = self._key(rel_dir).rstrip("/") + "/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                dest = cache / obj["Key"][len(prefix):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(self.bucket, obj["Key"], str(dest))
        return cache

    def rel_of(self, uri: str | None) -> str:
        """The path under the root of a URI this root wrote (a model's ``artifact_uri``); ValueError for any
        other URI: a model is only ever loaded from the data root it was published to."""
        prefix = self.uri + "/"
        if not uri or not uri.startswith(prefix):
            raise ValueError(f"{uri} is not under the data root {self.uri}")
        return uri[len(prefix):]

    def local_path(self, rel: str) -> Path:
        """Local path for writing a file that :meth:`put_file` will publish (local roots write in place)."""
        cache = get_settings().home / "cache"
        path = cache / self.bucket / self._key(rel) if self.is_s3 else self.base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def remove_dir(self, rel_dir: str) -> None:
        """Remove a folder and everything under it."""
        if not self.is_s3:
            shutil.rmtree(self.base / rel_dir, ignore_errors=True)
            return
        s3 = self._s3()
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(rel_dir).rstrip("/") + "/"):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
