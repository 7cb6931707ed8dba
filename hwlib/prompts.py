"""The model card's prompt: system prompt, user turn, answer sentence, and rendering through chat templates."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

SYSTEM_PROMPT = (
    "You are a helpful assistant that classifies the sentiment of a message. "
    "Classify the sentiment of the given message as exactly one word: 'negative', 'neutral', or 'positive'. "
    "Be brief, respond with exactly one word."
)
USER_TEMPLATE = 'Message: "{text}"'
ANSWER_PREFIX = "Classifying the sentiment of the message as"
ANSWER_TEMPLATE = ANSWER_PREFIX + " {label}."

# Used only when a tokenizer ships without a chat template (documented fallback, the ChatML format).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

Message = dict[str, str]
ZERO_WIDTH_SPACE = "\u200b"


def special_strings(tokenizer) -> tuple[str, ...]:
    """Every string the tokenizer reads as a special token (turn markers, end of text, ...), longest first."""
    found = {token.content for token in getattr(tokenizer, "added_tokens_decoder", {}).values() if token.special}
    found |= set(tokenizer.all_special_tokens)
    return tuple(sorted(found, key=len, reverse=True))


def template_markers(tokenizer, template: str | None = None, eos_token: str | None = None,
                     bos_token: str | None = None) -> tuple[str, ...]:
    """The markup a chat template writes around the turns (`<|im_start|>user`, `<|assistant|>`, `</s>`, ...), as
    whitespace-separated pieces that are not plain words, longest first. Special tokens or not, a message must not
    contain them: on Zephyr `<|user|>` and `<|assistant|>` are ordinary text that the template itself writes."""
    return _template_markers(template or tokenizer.chat_template or CHATML_TEMPLATE, tokenizer, eos_token, bos_token)


@lru_cache(maxsize=16)
def _template_markers(template: str, tokenizer, eos_token: str | None, bos_token: str | None = None) -> tuple[str, ...]:
    probe = {role: f"PROBE{role.upper()}7f3a" for role in ("system", "user", "assistant")}
    conversation = [{"role": role, "content": content} for role, content in probe.items()]
    if not _supports_system_role(template, tokenizer):
        conversation = conversation[1:]
    extra = {name: token for name, token in (("eos_token", eos_token), ("bos_token", bos_token)) if token is not None}
    rendered = tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=False,
                                             add_generation_prompt=False, **extra)
    bos = bos_token if bos_token is not None else tokenizer.bos_token
    if "bos_token" in template and bos and rendered.startswith(bos):  # a marker of its own, not glued to the first turn's
        rendered = f"{bos} {rendered[len(bos):]}"
    for content in probe.values():
        rendered = rendered.replace(content, " ")
    pieces = {piece for piece in rendered.split() if not piece.isalnum()}
    return tuple(sorted(pieces, key=len, reverse=True))


def protected_strings(tokenizer, template: str | None = None, eos_token: str | None = None,
                      bos_token: str | None = None) -> tuple[str, ...]:
    """What `neutralize` breaks in a message: the tokenizer's special tokens and the template's own markup."""
    found = set(special_strings(tokenizer)) | set(template_markers(tokenizer, template, eos_token, bos_token))
    return tuple(sorted(found, key=len, reverse=True))


def neutralize(text: str, specials: tuple[str, ...]) -> str:
    """The message with each protected string in it broken by a zero-width space after its first character.

    The chat template is rendered to text and then tokenized with special tokens recognised, so a tweet containing
    `<|im_end|>` (ChatML) or a line `<|assistant|>` (Zephyr, where it is plain text) could otherwise close its own turn
    and write a fake assistant answer. Broken this way the string is tokenized as other characters and reads the same
    to a person. Training, `score` and `generate` all go through this, so they see the same text.
    """
    for special in specials:
        if special in text:
            text = text.replace(special, special[0] + ZERO_WIDTH_SPACE + special[1:])
    return text


def answer(label: str) -> str:
    """The assistant's answer sentence for a label name."""
    return ANSWER_TEMPLATE.format(label=label)


def build_messages(text: str, system_role: bool = True, specials: tuple[str, ...] = ()) -> list[Message]:
    """System and user turns for one message; without a system role the system text opens the user turn.

    `specials` (from `protected_strings(tokenizer)`) are neutralized in the message, so its text stays text."""
    user = USER_TEMPLATE.format(text=neutralize(text, specials))
    if system_role:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
    return [{"role": "user", "content": f"{SYSTEM_PROMPT}\n\n{user}"}]


def build_example(text: str, label: str, system_role: bool = True,
                  specials: tuple[str, ...] = ()) -> dict[str, list[Message]]:
    """One TRL conversational prompt/completion example (the loss falls on the completion only)."""
    return {
        "prompt": build_messages(text, system_role, specials),
        "completion": [{"role": "assistant", "content": answer(label)}],
    }


def ensure_chat_template(tokenizer) -> None:
    """Give a tokenizer without a chat template the ChatML one, so rendering never fails."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE


def supports_system_role(tokenizer) -> bool:
    """Whether the tokenizer's chat template accepts a `system` turn (some raise, some drop it silently)."""
    return _supports_system_role(tokenizer.chat_template or CHATML_TEMPLATE, tokenizer)


@lru_cache(maxsize=16)
def _supports_system_role(template: str, tokenizer) -> bool:
    probe = "SYSTEM-PROBE-7f3a"
    try:
        rendered = tokenizer.apply_chat_template(
            [{"role": "system", "content": probe}, {"role": "user", "content": "hi"}],
            chat_template=template,
            tokenize=False,
        )
    except Exception:  # jinja2 TemplateError: "System role not supported" and the like
        return False
    return probe in rendered


def render_prompt(tokenizer, text: str) -> str:
    """The prompt as the model sees it at inference: chat template applied, generation prompt appended."""
    ensure_chat_template(tokenizer)
    messages = build_messages(text, supports_system_role(tokenizer), protected_strings(tokenizer))
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def render_transcript(tokenizer, text: str, label: str) -> str:
    """Prompt and answer rendered as one conversation, as seen in training."""
    ensure_chat_template(tokenizer)
    example = build_example(text, label, supports_system_role(tokenizer), protected_strings(tokenizer))
    return tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)


# The Zephyr-style layout of TinyLlama-1.1B-Chat's template, written out so it renders offline.
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


# Gemma's turn layout (`<start_of_turn>user` / `<start_of_turn>model`, `<end_of_turn>`, `<bos>` first), written out
# for the Gemma 3 copy, whose GGUF carries no template. Gemma has no system turn: as in Google's own template for
# Gemma 3, a system message opens the first user turn.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set opening = messages[0]['content'] + '\n\n' %}{% set turns = messages[1:] %}"
    "{% else %}{% set opening = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' }}"
    "{{ (opening if loop.first else '') + message['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@dataclass(frozen=True)
class ChatFormat:
    """A preset's chat format: its layout's name, the template, the token that ends a turn (the token the model learns
    to stop on) and which of the template's markers that model's tokenizer reads as special tokens (the rest are
    ordinary text, which only `neutralize` keeps out of messages)."""

    layout: str
    template: str
    end_of_turn: str
    special_markers: tuple[str, ...]
    system_turn: bool = True  # False: a system message opens the user's turn instead of a turn of its own
    bos_token: str = ""  # what the template writes first where it writes `bos_token` (Gemma's `<bos>`)


# SmolLM2 and Lite-Oute use ChatML; TinyLlama-1.1B-Chat uses the Zephyr layout, where only `</s>` is a special token
# of its (Llama) tokenizer and the role markers are spelled in ordinary sub-word tokens; Gemma 3 its own layout, whose
# turn markers the converted copy's tokenizer reads as special tokens.
CHAT_FORMATS: dict[str, ChatFormat] = {
    "smollm2-135m": ChatFormat("ChatML", CHATML_TEMPLATE, "<|im_end|>", ("<|im_start|>", "<|im_end|>")),
    "lite-oute-300m": ChatFormat("ChatML", CHATML_TEMPLATE, "<|im_end|>", ("<|im_start|>", "<|im_end|>")),
    "tinyllama-1.1b": ChatFormat("Zephyr", ZEPHYR_TEMPLATE, "</s>", ("</s>",)),
    "gemma3-270m": ChatFormat("Gemma", GEMMA_TEMPLATE, "<end_of_turn>",
                              ("<bos>", "<start_of_turn>", "<end_of_turn>"), system_turn=False, bos_token="<bos>"),
}


def render_in_format(tokenizer, preset: str, text: str, label: str, system_role: bool = True) -> str:
    """A training conversation laid out in a preset's chat format with that model's own end-of-turn token, rendered
    offline with any tokenizer (the template is text; only the special tokens' spelling comes from the preset).
    `system_role=False` renders the fallback for templates without a system turn (the system text opens the user's)."""
    chat = CHAT_FORMATS[preset]
    specials = protected_strings(tokenizer, chat.template, chat.end_of_turn, chat.bos_token or None)
    example = build_example(text, label, system_role, specials)
    return tokenizer.apply_chat_template(example["prompt"] + example["completion"], chat_template=chat.template,
                                         tokenize=False, eos_token=chat.end_of_turn, bos_token=chat.bos_token)


def token_counts(tokenizer, text: str, label: str) -> dict[str, int]:
    """Tokens spent on each part of one training conversation."""
    def count(part: str) -> int:
        return len(tokenizer(part, add_special_tokens=False)["input_ids"])

    whole = count(render_transcript(tokenizer, text, label))
    parts = {"system prompt": count(SYSTEM_PROMPT), "user turn": count(USER_TEMPLATE.format(text=text)),
             "answer": count(answer(label))}
    return {**parts, "chat markup": whole - sum(parts.values()), "total": whole}
