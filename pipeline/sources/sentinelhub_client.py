"""The HTTP side of the Sentinel Hub source: credentials, sentinelhub-py's client with the waits it
lacks, a requests-per-minute pace, the monthly processing-unit budget, and errors that name the fix.

sentinelhub-py retries 5xx and dropped connections (`max_download_attempts`, `download_sleep_time`,
backoff x3) and honours `Retry-After` on 429 (in milliseconds, as Sentinel Hub sends it), but it
waits silently and without end through a 429 storm, does not honour `Retry-After` on a 503, and
fails on a token the server expired before the client expected. `PacedClient` adds those.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from oauthlib.oauth2.rfc6749.errors import InsecureTransportError, OAuth2Error
from sentinelhub import DataCollection, SentinelHubDownloadClient, SentinelHubSession, SHConfig
from sentinelhub.download.models import DownloadRequest
from sentinelhub.exceptions import DownloadFailedException

from pipeline.atomic import write_json_atomic
from pipeline.errors import InputError

if TYPE_CHECKING:
    from pipeline.config import SentinelHubSource

log = logging.getLogger(__name__)

# requests-oauthlib logs the token request body (the client secret) and the token at DEBUG
for _name in ("requests_oauthlib", "oauthlib"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class Endpoint:
    """Where a Sentinel Hub deployment answers, and where it issues tokens."""

    base_url: str
    token_url: str


ENDPOINTS = {
    "cdse": Endpoint("https://sh.dataspace.copernicus.eu",
                     "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"),
    "sentinel-hub": Endpoint("https://services.sentinel-hub.com",
                             "https://services.sentinel-hub.com/auth/realms/main/protocol/openid-connect/token"),
}
#: What an offline user can do instead.
OFFLINE_FIX = ("check the network connection and proxy; on a network without internet access, read imagery "
               "carried in with `source: {type: local, paths: [...]}`, or carry an imagery cache filled online "
               "(docs/sources/cache.md)")
CREDENTIALS_FIX = ("set SH_CLIENT_ID and SH_CLIENT_SECRET in the environment, or name a sentinelhub-py profile in "
                   "source.profile (sentinelhub.config --profile NAME --sh_client_id ID --sh_client_secret SECRET); "
                   "an OAuth client of Copernicus Data Space works only with endpoint: cdse, one of "
                   "sentinel-hub.com only with endpoint: sentinel-hub")
#: Consecutive 429 answers to one request after which waiting longer is pointless.
MAX_RATE_LIMITED = 10


def sh_config(settings: SentinelHubSource) -> SHConfig:
    """sentinelhub-py's configuration: credentials from the environment or a profile, never the run configuration."""
    if settings.profile:
        try:
            config = SHConfig(settings.profile)  # the environment still takes precedence, as in sentinelhub-py
        except KeyError:
            raise InputError(SHConfig.get_config_location(), "source.profile",
                             f"there is no sentinelhub-py profile {settings.profile!r}", CREDENTIALS_FIX) from None
    else:  # not sentinelhub-py's default profile: it would write a configuration file on first use
        config = SHConfig(use_defaults=True)
        config.sh_client_id = os.environ.get("SH_CLIENT_ID", "")
        config.sh_client_secret = os.environ.get("SH_CLIENT_SECRET", "")
    if not (config.sh_client_id and config.sh_client_secret):
        raise InputError(None, "source", "no Sentinel Hub credentials were found", CREDENTIALS_FIX)
    endpoint = ENDPOINTS[settings.endpoint]
    config.sh_base_url = (settings.base_url or endpoint.base_url).rstrip("/")
    config.sh_token_url = settings.token_url or endpoint.token_url
    config.max_download_attempts = settings.attempts
    config.download_sleep_time = settings.retry_wait_s
    config.number_of_download_processes = 1
    return config


def data_collection(collection: str, base_url: str) -> DataCollection:
    """The collection bound to the configured deployment (sentinelhub-py's own definitions name sentinel-hub.com)."""
    name = "EOLEADS_" + hashlib.sha256(f"{collection} {base_url}".encode()).hexdigest()[:12].upper()
    return DataCollection.define(name, api_id=collection, catalog_id=collection, service_url=base_url)


class Pace:
    """At most `per_minute` requests in any 60 s: the run waits, and says so, instead of being refused."""

    def __init__(self, per_minute: int | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.per_minute, self._clock, self._sleep = per_minute, clock, sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Return when one more request keeps within the limit."""
        if not self.per_minute:
            return
        with self._lock:
            now = self._clock()
            while self._sent and self._sent[0] <= now - 60:
                self._sent.popleft()
            if len(self._sent) >= self.per_minute:
                delay = self._sent[0] + 60 - now
                log.warning("pausing %.1f s to keep to source.requests_per_minute = %d", delay, self.per_minute)
                self._sleep(delay)
                self._sent.popleft()
            self._sent.append(self._clock())


class ProcessingUnitBudget:
    """Processing units spent per calendar month (UTC) and deployment, kept beside the imagery cache,
    so a run stops before it would exceed `source.processing_units_per_month`."""

    def __init__(self, path: Path, per_month: float | None, base_url: str) -> None:
        self.path, self.per_month, self.base_url = Path(path), per_month, base_url
        self._lock = threading.Lock()

    @staticmethod
    def month() -> str:
        return datetime.now(UTC).strftime("%Y-%m")

    def spent(self) -> float:
        """Units spent this month through this cache on this deployment."""
        if not self.path.exists():
            return 0.0
        ledger = json.loads(self.path.read_text(encoding="utf-8"))
        return float(ledger.get(self.base_url, {}).get(self.month(), 0.0))

    def check(self, units: float) -> None:
        """Raise before a request of `units` would take the month over budget."""
        if self.per_month is None:
            return
        spent = self.spent()
        if spent + units > self.per_month:
            raise InputError(self.path, "source.processing_units_per_month",
                             f"the next request needs {units:.2f} processing units; {spent:.2f} of "
                             f"{self.per_month:g} are spent in {self.month()}, so it would exceed the budget",
                             "raise source.processing_units_per_month if the account allows it, or run again next "
                             "month; finished cells and fetched imagery are kept, so the run resumes where it "
                             "stopped (`eoleads plan` shows what a run needs)")

    def spend(self, units: float) -> None:
        """Add `units` to this month's tally (written atomically)."""
        with self._lock:
            ledger = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
            month = ledger.setdefault(self.base_url, {})
            month[self.month()] = round(float(month.get(self.month(), 0.0)) + units, 4)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, ledger)


def retry_after_s(headers: dict, default: float) -> float:
    """Seconds to wait from a Retry-After header: Sentinel Hub sends milliseconds; an HTTP date is honoured too."""
    value = headers.get("Retry-After")
    if value is None:
        return default
    try:
        return max(float(value) / 1000.0, 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return default


class PacedClient(SentinelHubDownloadClient):
    """sentinelhub-py's download client, paced per minute, with bounded and visible waits on 429 and
    503, and one fresh token when the server rejects one it has expired."""

    def __init__(self, config: SHConfig, pace: Pace) -> None:
        super().__init__(config=config, session=new_session(config))
        self.pace = pace

    def _do_download(self, request: DownloadRequest) -> requests.Response:
        refreshed, refused, waited = False, 0, 0.0
        while True:
            self.pace.wait()
            response = super()._do_download(request)
            status = response.status_code
            if status == 401 and request.use_session and not refreshed:
                log.info("Sentinel Hub rejected the access token; fetching a new one")
                self.session = new_session(self.config)
                refreshed = True
                continue
            busy = status == 429 or (status == 503 and "Retry-After" in response.headers)
            if not busy:
                return response
            refused += 1
            if refused >= MAX_RATE_LIMITED:
                raise InputError(self.config.sh_base_url, "source.requests_per_minute",
                                 f"Sentinel Hub refused {refused} requests in a row ({status} "
                                 f"{'Too Many Requests' if status == 429 else 'Service Unavailable'}) over "
                                 f"{waited:.0f} s of waiting", "set source.requests_per_minute to your account's "
                                 "limit (or lower), or run again later; finished cells and fetched imagery are kept")
            delay = retry_after_s(response.headers, self.config.download_sleep_time * 2 ** (refused - 1))
            log.warning("Sentinel Hub asked to slow down (%d); pausing %.1f s before retrying", status, delay)
            time.sleep(delay)
            waited += delay


def new_session(config: SHConfig) -> SentinelHubSession:
    """An authenticated session; bad credentials and an unreachable token service are errors that name the fix."""
    with explained(config.sh_token_url, "authentication"):
        return SentinelHubSession(config=config)


def _server_message(response: requests.Response | None) -> str:
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error.get("description") or error.get("reason") or error)[:300]
    return str(body.get("error_description") or error)[:300]


@contextmanager
def explained(url: str, what: str, collection: str | None = None) -> Iterator[None]:
    """Turn the client's failures into errors a user can act on (no credentials in them: sentinelhub-py and
    oauthlib never put the secret in their messages, and the server's answer is all that is quoted).
    With `collection`, a 404, or a 400 that names the collection, means the deployment does not know it."""
    try:
        yield
    except InsecureTransportError:
        raise InputError(url, "source.token_url", "OAuth refuses a token URL that is not https",
                         "give the https URL, or leave source.token_url out to use the endpoint's") from None
    except OAuth2Error as exc:
        raise InputError(url, "credentials", f"Sentinel Hub refused the credentials ({exc.error})",
                         CREDENTIALS_FIX) from None
    except DownloadFailedException as exc:
        cause = exc.request_exception
        if isinstance(cause, requests.HTTPError) and cause.response is not None:
            status, message = cause.response.status_code, _server_message(cause.response)
            if status == 401:
                raise InputError(url, "credentials", f"Sentinel Hub refused the credentials ({message})",
                                 CREDENTIALS_FIX) from None
            if status == 403:
                raise InputError(url, "credentials", f"Sentinel Hub refused the {what} (403: {message})",
                                 "check that the account may use this collection and has processing units left "
                                 "this month (the account page of your Sentinel Hub deployment)") from None
            if collection and (status == 404 or (status == 400 and "collection" in message.lower())):
                raise InputError(url, "source.collection", f"Sentinel Hub does not know the collection "
                                 f"{collection!r} ({status}: {message})", "set source.collection to sentinel-2-l2a "
                                 "(the detectors need Level-2A with SCL; the id is the same on CDSE and "
                                 "sentinel-hub.com)") from None
            if status >= 500:
                raise InputError(url, None, f"Sentinel Hub failed the {what} with {status} after "
                                 f"repeated attempts ({message})", "run again later; finished cells and fetched "
                                 "imagery are kept, so the run resumes where it stopped") from None
            raise InputError(url, None, f"Sentinel Hub rejected the {what} ({status}: {message})",
                             "check the source block of the configuration (docs/sources/sentinelhub.md)") from None
        raise InputError(url, None, f"cannot reach Sentinel Hub for the {what} "
                         f"({cause.__class__.__name__ if cause else exc.__class__.__name__})", OFFLINE_FIX) from None
    except requests.RequestException as exc:
        raise InputError(url, None, f"cannot reach Sentinel Hub for the {what} ({exc.__class__.__name__})",
                         OFFLINE_FIX) from None
