"""Meeting summaries that never leave the machine.

With an endpoint: an OpenAI-compatible chat API (Ollama, LM Studio, vLLM) that must be on loopback; the
transcript is cut into chunks that fit the model's context, each chunk is summarised, then the partial
summaries are merged. Without one: an offline extractive summary (key points, decisions, action items)
picked from the transcript's own sentences by word frequency and cue phrases.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from strongroom.meetings.errors import SummaryEndpointError
from strongroom.meetings.formats import Transcript, clock
from strongroom.meetings.guard import is_loopback_host

DEFAULT_CHUNK_CHARS = 6000  # ~1,500 tokens: fits a 4k-context local model with room for the answer
SYSTEM_PROMPT = (
    "You summarise meeting transcripts for a security team. Reply in Markdown with three sections: "
    "'Key points', 'Decisions', 'Action items' (owner and deadline when stated). Use only the transcript."
)
MERGE_PROMPT = "Merge these partial summaries of one meeting into a single summary with the same three sections."

DECISION_CUES = re.compile(
    r"\b(decided|decision|agreed|agree|approve[ds]?|resolved|we will go with|let'?s go with|conclude[ds]?)\b", re.I
)
ACTION_CUES = re.compile(
    r"\b(action item|will (?!not\b)\w+|needs? to|has to|have to|must|to ?do|follow[ -]up|assign(?:ed)?|"
    r"by (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|next week|end of)|"
    r"i'll|we'll|please)\b",
    re.I,
)
_STOPWORD_TEXT = """a about above after again all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her
here hers him his how i if in into is it its itself just let me more most my no nor not now of off on once only or
other our ours out over own same she should so some such than that the their them then there these they this those
through to too under until up us very was we were what when where which while who whom why will with would you your
yes okay ok thanks thank good morning everyone"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass
class Item:
    """One summary line with where it came from in the meeting."""

    text: str
    speaker: str | None
    start: float


@dataclass
class Summary:
    """A meeting summary: structured (extractive) or free Markdown (from a local model)."""

    method: str
    key_points: list[Item] = field(default_factory=list)
    decisions: list[Item] = field(default_factory=list)
    action_items: list[Item] = field(default_factory=list)
    markdown: str = ""
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        def items(values: list[Item]) -> list[dict[str, Any]]:
            return [{"text": i.text, "speaker": i.speaker, "start": round(i.start, 3)} for i in values]

        return {
            "method": self.method,
            "key_points": items(self.key_points),
            "decisions": items(self.decisions),
            "action_items": items(self.action_items),
            "markdown": self.markdown,
            "note": self.note,
        }


def sentences(t: Transcript) -> list[Item]:
    """The transcript's sentences, each with its speaker (display name) and start time."""
    out: list[Item] = []
    for segment in t.segments:
        for piece in re.split(r"(?<=[.!?])\s+", segment.text.strip()):
            if piece.strip():
                out.append(Item(piece.strip(), t.display(segment.speaker), segment.start))
    return out


def extractive_summary(t: Transcript, key_points: int = 5) -> Summary:
    """Offline summary: the most content-bearing sentences, plus every sentence with decision/action cues."""
    items = sentences(t)

    def content(text: str) -> list[str]:
        return [w for w in re.findall(r"[a-z']+", text.lower()) if w not in STOPWORDS and len(w) > 2]

    freq = Counter(w for item in items for w in content(item.text))
    scored = []
    for index, item in enumerate(items):
        words = content(item.text)
        if len(words) >= 3:
            scored.append((sum(freq[w] for w in words) / len(words) ** 0.5, index))
    top = sorted(index for _, index in sorted(scored, reverse=True)[:key_points])
    summary = Summary(
        method="extractive",
        key_points=[items[i] for i in top],
        decisions=[i for i in items if DECISION_CUES.search(i.text)],
        action_items=[i for i in items if ACTION_CUES.search(i.text) and not DECISION_CUES.search(i.text)],
    )
    summary.markdown = summary_markdown(summary)
    return summary


def summary_markdown(s: Summary) -> str:
    """Markdown for a structured summary (three sections, each line with time and speaker)."""

    def section(title: str, values: list[Item]) -> str:
        lines = [f"- [{clock(i.start)}] {i.speaker + ': ' if i.speaker else ''}{i.text}" for i in values]
        return f"## {title}\n" + ("\n".join(lines) if lines else "- (none found)") + "\n"

    head = "# Meeting summary (extractive, offline)\n"
    note = f"\n> {s.note}\n" if s.note else ""
    return (
        head
        + note
        + "\n"
        + "\n".join(
            [
                section("Key points", s.key_points),
                section("Decisions", s.decisions),
                section("Action items", s.action_items),
            ]
        )
    )


def check_endpoint(url: str) -> str:
    """The endpoint's base URL rebuilt from its parts if it is http(s) on a loopback host, else an error."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise SummaryEndpointError(f"summary endpoint {url!r}: only http(s) URLs are accepted")
    host = parts.hostname
    if host is None or parts.username is not None or parts.password is not None:
        raise SummaryEndpointError(f"summary endpoint {url!r}: give a plain host, without user info")
    if not is_loopback_host(host):
        raise SummaryEndpointError(
            f"summary endpoint {url!r}: host {host} is not loopback; only a local model server "
            "(127.0.0.1, ::1, localhost) may see a transcript"
        )
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        raise SummaryEndpointError("summary endpoint answered with a redirect; redirects are not followed")


def chunk_lines(lines: list[str], limit: int) -> list[str]:
    """Join lines into chunks of at most ``limit`` characters (a longer single line is cut)."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        while len(line) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:limit])
            line = line[limit:]
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


class LoopbackLLM:
    """An OpenAI-compatible chat endpoint on loopback; no proxies, no redirects."""

    def __init__(self, url: str, model: str, timeout: float = 300.0) -> None:
        self.base = check_endpoint(url)
        self.model = model
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    def chat(self, system: str, user: str) -> str:
        """One chat completion; errors name the endpoint."""
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
                "temperature": 0.2,
            }
        ).encode()
        url = f"{self.base}/chat/completions"
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                doc = json.loads(response.read())
            return str(doc["choices"][0]["message"]["content"]).strip()
        except urllib.error.HTTPError as exc:
            raise SummaryEndpointError(f"{url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise SummaryEndpointError(f"{url}: unreachable: {getattr(exc, 'reason', exc)}") from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise SummaryEndpointError(f"{url}: not an OpenAI-compatible chat completion") from None


def llm_summary(t: Transcript, llm: LoopbackLLM, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Summary:
    """Summarise chunk by chunk, then merge the partial summaries (recursively if they are long too)."""
    lines = [f"[{clock(s.start)}] {t.display(s.speaker) or 'Speaker'}: {s.text}" for s in t.segments]
    parts = [llm.chat(SYSTEM_PROMPT, chunk) for chunk in chunk_lines(lines, chunk_chars)]
    while len(parts) > 1:
        parts = [llm.chat(MERGE_PROMPT, chunk) for chunk in chunk_lines(parts, chunk_chars)]
    text = parts[0] if parts else "(empty transcript)"
    return Summary(method=f"llm:{llm.model}", markdown=text + "\n")


def summarize(
    t: Transcript, endpoint: str | None = None, model: str = "local", chunk_chars: int = DEFAULT_CHUNK_CHARS
) -> Summary:
    """A local-model summary when a loopback ``endpoint`` is given, else (or if it fails) an extractive one.

    A non-loopback endpoint is refused outright (``SummaryEndpointError``) rather than silently skipped.
    """
    if endpoint is None:
        return extractive_summary(t)
    llm = LoopbackLLM(endpoint, model)
    try:
        return llm_summary(t, llm, chunk_chars)
    except SummaryEndpointError as exc:
        fallback = extractive_summary(t)
        fallback.note = f"local model unavailable ({exc}); extractive summary used instead"
        fallback.markdown = summary_markdown(fallback)
        return fallback
