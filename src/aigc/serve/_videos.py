"""OpenAI's videos API: create a video job, then poll it and download its content once it is completed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response

from aigc._results import Record
from aigc.serve._base import ServedModel, ServerBase
from aigc.serve._config import ServeConfig
from aigc.serve._encoding import encode_video, record_json
from aigc.serve._errors import APIError, invalid
from aigc.serve._jobs import Cancelled, Done, Failed, Job, Progress
from aigc.serve._metrics import Metrics
from aigc.serve._protocol import VIDEO_FIELDS, Body, parse_video

__all__ = ["VideoJob", "VideoRoutes"]

MAX_VIDEOS = 256  # finished videos kept in memory for download, at most


@dataclass
class VideoJob:
    """A video being made or kept for download (OpenAI's videos API: create, then poll and download)."""

    id: str
    job: Job
    model: str
    prompt: str
    size: str
    seconds: float | None
    status: str = "queued"
    progress: int = 0
    created_at: int = field(default_factory=lambda: int(time.time()))
    completed_at: int | None = None
    content: bytes | None = None
    record: Record | None = None
    error: dict[str, Any] | None = None

    def card(self, retention_s: float = 3600.0) -> dict[str, Any]:
        seconds = self.seconds
        if self.record is not None:
            meta = self.record.request
            frames, fps = meta.get("num_frames"), meta.get("fps")
            if seconds is None and isinstance(frames, int) and isinstance(fps, (int, float)) and fps:
                seconds = frames / fps
        return {"id": self.id, "object": "video", "created_at": self.created_at, "completed_at": self.completed_at,
                "expires_at": None if self.completed_at is None else int(self.completed_at + retention_s),
                "status": self.status, "model": self.model, "progress": self.progress, "prompt": self.prompt,
                "seconds": "auto" if seconds is None else f"{seconds:g}", "size": self.size, "error": self.error,
                "remixed_from_video_id": None, "aigc_record": record_json(self.record)}



class VideoRoutes(ServerBase):
    """The video routes, and the videos kept for download."""

    def __init__(self, models: dict[str, ServedModel], config: ServeConfig, metrics: Metrics) -> None:
        super().__init__(models, config, metrics)
        self.videos: dict[str, VideoJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def create_video(self, request: HTTPRequest) -> Response:
        ctype = request.headers.get("content-type", "")
        body = await self.form_body(request) if ctype.startswith("multipart/") else Body(await self.json_body(request))
        call = parse_video(body, self.limits)
        served = self.model(call.model, "video")
        req = served.request(call.prompt, {**call.params, **call.images}, VIDEO_FIELDS)
        self._expire_videos()
        job = self.submit(request, served, req, endpoint="videos", rename=VIDEO_FIELDS, encode=encode_video)
        video = VideoJob(id=f"video_{job.id}", job=job, model=served.id, prompt=call.prompt,
                         size=f"{req.width}x{req.height}" if getattr(req, "width", None) else "auto",  # type: ignore[attr-defined]
                         seconds=call.seconds)
        self.videos[video.id] = video
        task = asyncio.ensure_future(self._follow(video))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return JSONResponse(video.card())

    async def _follow(self, video: VideoJob) -> None:
        """Consume a video job's events (nobody waits on the connection: clients poll)."""
        while True:
            event = await video.job.next_event()
            if isinstance(event, Progress):
                video.status = "in_progress"
                video.progress = min(99, int(100 * event.step / max(event.total, 1)))
            elif isinstance(event, Done):
                video.status, video.progress = "completed", 100
                video.completed_at = int(time.time())
                video.content = event.payload["files"][0]
                video.size, video.seconds = event.payload["size"], event.payload["seconds"]
                video.record = event.record
                return
            elif isinstance(event, Failed):
                video.status = "failed"
                video.error = {"code": event.error.code or "failed", "message": event.error.message,
                               "param": event.error.param, "type": event.error.type}
                video.completed_at = int(time.time())
                return
            elif isinstance(event, Cancelled):
                video.status = "failed"
                video.error = {"code": event.reason, "message": f"cancelled ({event.reason})"}
                video.completed_at = int(time.time())
                return

    def _video(self, request: HTTPRequest) -> VideoJob:
        video_id = request.path_params["video_id"]
        video = self.videos.get(video_id)
        if video is None:
            raise APIError(404, f"no video {video_id!r} on this server (finished videos are kept "
                           f"{self.config.video_retention_s:g} s)", param="video_id", code="not_found")
        return video

    def _expire_videos(self) -> None:
        """Forget finished videos older than the retention time, and all but the newest ``MAX_VIDEOS``."""
        now = time.time()
        finished = [v for v in self.videos.values() if v.completed_at is not None]
        finished.sort(key=lambda v: v.completed_at or 0)
        for i, video in enumerate(finished):
            if now - (video.completed_at or now) > self.config.video_retention_s or i < len(finished) - MAX_VIDEOS:
                del self.videos[video.id]

    async def get_video(self, request: HTTPRequest) -> Response:
        video = self._video(request)
        if video.status in ("queued",) and video.job.started is not None:
            video.status = "in_progress"
        return JSONResponse(video.card(self.config.video_retention_s))

    async def list_videos(self, request: HTTPRequest) -> Response:
        self._expire_videos()
        data = [v.card(self.config.video_retention_s) for v in self.videos.values()]
        return JSONResponse({"object": "list", "data": data, "has_more": False,
                             "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})

    async def video_content(self, request: HTTPRequest) -> Response:
        video = self._video(request)
        variant = request.query_params.get("variant", "video")
        if variant != "video":
            raise invalid("variant", variant, "only the video itself is available", "leave variant out")
        if video.status != "completed" or video.content is None:
            raise APIError(409 if video.status != "failed" else 400, f"video {video.id} is {video.status}; its "
                           "content is there once it is completed", param="video_id", code="not_ready")
        return Response(content=video.content, media_type="video/mp4")

    async def delete_video(self, request: HTTPRequest) -> Response:
        video = self._video(request)
        video.job.cancel("deleted")
        del self.videos[video.id]
        return JSONResponse({"id": video.id, "object": "video.deleted", "deleted": True})
