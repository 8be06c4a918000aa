"""The FastAPI app: a page, a JSON API, model work in a bounded pool off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from compressnet import zoo
from compressnet.codec import Codec, load
from compressnet.image import MAX_PIXELS
from compressnet.server import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD, DEFAULT_TIME_LIMIT
from compressnet.server.docs import render_api_docs
from compressnet.server.jobs import Job, JobRunner
from compressnet.server.limits import BodyLimit, JobTimeout, too_large
from compressnet.server.service import UploadError, compress_upload, decompress_upload, preview_upload

FORM_OVERHEAD = 64 * 1024  # a multipart body's bytes besides the file: boundaries, form fields
MAX_REFINE = 40  # steps a request may ask for (40: about a minute for a 768x512 photo here)

Upload = Annotated[UploadFile, File(description="the image (or .cnet file)")]
OptInt = Annotated[int | None,
                   Form(description="quality, 1 = lowest rate (default: the model's, see /api/models)")]
OptFloat = Annotated[float | None,
                     Form(description="highest quality (then finest colour blocks) whose file fits this bpp")]
Flag = Annotated[bool, Form(description="also match HEVC, AVIF and JPEG to the file size")]
Realism = Annotated[float | None, Form(description=(
    "decoder: 0 faithful (smooth), 1 realism (sharp), between a blend; default the model's"))]
Refine = Annotated[int, Form(description=(
    f"steps of encoder-side search, 0 to {MAX_REFINE}: a better image in a file no larger, "
    "slower (10 steps: about 17 s for a 768x512 photo on 2 cores); up to 4 megapixels"))]



def _error(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, UploadError):
        return exc.status, str(exc)
    if isinstance(exc, JobTimeout):
        return 503, str(exc)
    if isinstance(exc, MemoryError):
        return 413, "out of memory: try a smaller image"
    return 500, f"internal error: {type(exc).__name__}: {exc}"


# C901 counts the routes' branches as the factory's: they are closures over the app's settings
# (codec, limits, pool), each a few lines, which FastAPI's decorators want defined here.
def create_app(model: str = zoo.DEFAULT_MODEL, max_upload: int = DEFAULT_MAX_UPLOAD,  # noqa: C901
               max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 2,
               time_limit: float = DEFAULT_TIME_LIMIT) -> FastAPI:
    """The app; ``model`` is a bundled name or a weights path, loaded once at start. At most
    ``workers`` requests run at once (the rest queue), each for at most ``time_limit`` seconds."""
    codec: Codec = load(model)
    decoders: dict[int, Codec] = {}
    runner = JobRunner(workers=workers, time_limit=time_limit)
    max_pixels = min(max_pixels, MAX_PIXELS)
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        runner.shutdown()

    # /docs is served from here (docs.py), not Swagger's CDN: the page works offline
    app = FastAPI(title="CompressNet", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=(
        "Generative image compression at extremely low bitrates, compared at equal file size with "
        f"HEVC (x265 via pillow-heif, BPG's engine), AVIF and JPEG. Uploads up to {max_upload:,} "
        f"bytes and {max_pixels:,} pixels; nothing is stored."))
    app.state.codec, app.state.runner = codec, runner
    app.add_middleware(BodyLimit, max_body=max_upload + FORM_OVERHEAD, max_upload=max_upload)

    async def read_upload(request: Request, upload: UploadFile) -> bytes:
        data = await upload.read(max_upload + 1)  # the body is bounded already (BodyLimit)
        if len(data) > max_upload:
            raise HTTPException(413, too_large(max_upload))
        return data

    def compress_job(request_data: bytes, name: str, quality: int | None, target_bpp: float | None,
                     compare: bool, refine: int, realism: float | None = None):
        if quality is not None and quality not in codec.qualities:
            raise HTTPException(400, f"quality must be between 1 and {len(codec.qualities)}")
        if target_bpp is not None and not 0 < target_bpp < 24:
            raise HTTPException(400, "target_bpp must be between 0 and 24")
        if not 0 <= refine <= MAX_REFINE:
            raise HTTPException(400, f"refine must be between 0 and {MAX_REFINE} steps")
        return runner.submit(lambda progress: compress_upload(
            codec, request_data, name, quality, target_bpp, compare, max_pixels, progress, refine,
            realism), _error)

    async def finished(job: Job) -> dict:
        """A job's result once the pool has run it, or its error as the HTTP answer."""
        await asyncio.wrap_future(job.future)
        if job.state == "failed":
            raise HTTPException(job.status_code, job.error)
        return job.result

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return (resources.files("compressnet.server") / "static" / "index.html").read_text()

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def api_docs() -> str:
        return render_api_docs(app.openapi())

    @app.get("/api/models", summary="The model in use and the bundled models")
    def models() -> dict:
        return {"default": codec.name, "qualities": list(codec.qualities),
                "default_quality": codec.default_quality,
                "channels": [codec.channels_sent(q) for q in codec.qualities],
                "realism": codec.realism is not None, "default_realism": codec.default_realism,
                "bundled": [e.name for e in zoo.REGISTRY if zoo.is_bundled(e)],
                "limits": {"max_upload_bytes": max_upload, "max_pixels": max_pixels}}

    @app.post("/api/compress", summary="Compress an image; compare with HEVC, AVIF and JPEG")
    async def compress(request: Request, file: Upload, quality: OptInt = None, target_bpp: OptFloat = None,
                       compare: Flag = True, refine: Refine = 0, realism: Realism = None) -> dict:
        data = await read_upload(request, file)
        return await finished(compress_job(data, file.filename or "upload", quality, target_bpp,
                                           compare, refine, realism))

    @app.post("/api/jobs/compress", status_code=202, summary="Start a compression; poll its progress")
    async def compress_async(request: Request, file: Upload, quality: OptInt = None,
                             target_bpp: OptFloat = None, compare: Flag = True,
                             refine: Refine = 0, realism: Realism = None) -> dict:
        data = await read_upload(request, file)
        try:
            job = compress_job(data, file.filename or "upload", quality, target_bpp, compare, refine,
                               realism)
        except OverflowError as exc:
            raise HTTPException(503, str(exc)) from None
        return {"id": job.id}

    @app.get("/api/jobs/{job_id}", summary="Progress and, when done, the result of a job")
    def job_status(job_id: str) -> dict:
        job = runner.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job (finished jobs are kept for 10 minutes)")
        return job.public()

    @app.post("/api/decompress", summary="Decode a .cnet file")
    async def decompress(request: Request, file: Upload, realism: Realism = None) -> dict:
        data = await read_upload(request, file)
        return await finished(runner.submit(
            lambda progress: decompress_upload(data, codec, decoders, realism, max_pixels, progress),
            _error))

    @app.post("/api/preview", summary="The coarse colours a .cnet file starts with, without decoding it")
    async def preview(request: Request, file: Upload) -> dict:
        data = await read_upload(request, file)
        return await finished(runner.submit(lambda progress: preview_upload(data, max_pixels), _error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    return app
