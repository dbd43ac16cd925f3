"""The lesson file format: a good file parses; every malformed one gets a line-numbered error."""

from __future__ import annotations

import pytest
from lessonkit import HEADER, LESSON, STEP

from simmta.lessons.format import LessonError, parse_text


def problems_of(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(LessonError) as info:
        parse_text(text, "t.md")
    return info.value.problems


def line_of(text: str, needle: str, occurrence: int = 0) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[occurrence]


def test_good_lesson_parses() -> None:
    lesson = parse_text(LESSON, "t.md")
    assert (lesson.id, lesson.slug, lesson.key) == (2, "life-of-a-message", "02-life-of-a-message")
    assert lesson.setup.config == {"queue_run_delay": "2s"}
    assert lesson.intro == "Intro."
    (step,) = lesson.steps
    assert step.title == "Send to bob"
    assert step.instruction == "Send mail from alice to bob."
    assert step.hints == ("Use simmta send.",)
    assert step.explanation == "It went through cleanup."
    assert step.solution[0].argv == ("send", "--from", "alice@simmta.test", "--to", "bob@simmta.test")
    assert step.goal.expectations[0].label == "a message reached bob's Maildir"


def test_code_fences_in_prose_are_not_steps() -> None:
    text = HEADER + STEP.replace(
        "Send mail from alice to bob.", "Try:\n\n```sh\n## not a heading\nsimmta ps\n```\n"
    )
    (step,) = parse_text(text).steps
    assert "## not a heading" in step.instruction


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        (
            'where = { data.rcpt = "bob@simmta.test" }',
            'where = { data.rcpt = "bob@simmta.test" ',
            "where = { data.rcpt",
            "TOML syntax error",
        ),
        (
            'event = "delivery/delivered"',
            'event = "delivery/delivred"',
            "delivery/delivred",
            "'delivery' has no type 'delivred'",
        ),
        (
            'event = "delivery/delivered"',
            'event = "deliver/delivered"',
            "deliver/delivered",
            "unknown kind 'deliver'",
        ),
        (
            'where = { data.rcpt = "bob@simmta.test" }',
            'where = { data.recipient = "bob" }',
            "data.recipient",
            "no data field 'recipient'",
        ),
        # once accepted, but nothing emits it: the records say what delivery/delivered carries
        (
            'where = { data.rcpt = "bob@simmta.test" }',
            'where = { data.sender = "alice" }',
            "data.sender",
            "no data field 'sender' (known: rcpt, via, where, dsn)",
        ),
        (
            'where = { data.rcpt = "bob@simmta.test" }',
            'where = { sender = "alice" }',
            "sender = ",
            "unknown event field 'sender'",
        ),
        (
            'where = { data.rcpt = "bob@simmta.test" }',
            'where = { data.rcpt = { like = "bob" } }',
            "like",
            "neither a field nor an operator",
        ),
        ('label = "a message', 'colour = "red"\nlabel = "a message', "colour", "unknown key 'colour'"),
        ('solution = ["send', 'solution = ["rm -rf /", "send', "solution", "not a simmta command"),
        (
            'solution = ["send',
            'solution = ["send --instance /tmp/x", "send',
            "solution",
            "do not give --instance",
        ),
        ("[[expect]]", "timeout = 9000\n\n[[expect]]", "timeout", "timeout"),
        ('label = "a message', 'min = -1\nlabel = "a message', "min = -1", "min: expected"),
        ('solution = ["send', 'hint = "x"\nsolution = ["send', "hint =", "unknown step key 'hint'"),
    ],
)
def test_step_errors_name_the_line(old: str, new: str, needle: str, message: str) -> None:
    text = LESSON.replace(old, new, 1)
    assert text != LESSON
    problems = problems_of(text)
    assert any(message in what for _, what in problems), problems
    assert line_of(text, needle) in [line for line, _ in problems], problems


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ('teacher = "Show the map."', "teacher = 3", "teacher", "teacher: expected text"),
        ('teacher = "Show the map."', 'teacher = "x"\nauthor = "me"', "author", "unknown front-matter key"),
        ('teacher = "Show the map."', 'teacher = "x"\nminutes = 10', "minutes", "measured, not declared"),
        (
            'sources = ["docs/sources.md#postfix-overview-receiving"]',
            'sources = ["REFERENCE.md section 1"]',
            "REFERENCE.md",
            "cite a section of docs/sources.md",
        ),
        (
            'sources = ["docs/sources.md#postfix-overview-receiving"]',
            'sources = ["docs/sources.md#no-such"]',
            "no-such",
            "no section 'no-such'",
        ),
        (
            'sources = ["docs/sources.md#postfix-overview-receiving"]',
            'sources = ["simmta/core/nothere.py"]',
            "nothere",
            "no such file in simmta's tree",
        ),
        (
            'config = { queue_run_delay = "2s" }',
            'config = { queue_run_delay = "soon" }',
            "config",
            "queue_run_delay: expected a time",
        ),
        (
            'config = { queue_run_delay = "2s" }',
            'config = { retry_time = "2s" }',
            "config",
            "retry_time: unknown parameter",
        ),
        ("config = {", 'peer_fault = "broken"\nconfig = {', "peer_fault", "setup.peer_fault"),
        ('slug = "life-of-a-message"', 'slug = "Life of a message"', "slug", "slug:"),
    ],
)
def test_front_matter_errors_name_the_line(old: str, new: str, needle: str, message: str) -> None:
    text = LESSON.replace(old, new, 1)
    ((line, what),) = problems_of(text)
    assert message in what
    assert line == line_of(text, needle)


def test_error_text_has_file_and_line() -> None:
    text = LESSON.replace('event = "delivery/delivered"', 'event = "nope/x"')
    with pytest.raises(LessonError) as info:
        parse_text(text, "lessons/02.md")
    assert str(info.value).startswith(f"lessons/02.md, line {line_of(text, 'nope/x')}: ")


def test_every_problem_is_reported_at_once() -> None:
    second = STEP.replace("## Send to bob", "## Again").replace(
        'event = "delivery/delivered"', 'event = "queue/flew"'
    )
    text = LESSON.replace('event = "delivery/delivered"', 'event = "nope/x"') + second
    lines = [line for line, _ in problems_of(text)]
    assert lines == [line_of(text, "nope/x"), line_of(text, "queue/flew")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no front matter\n", "starts with '+++'"),
        ("+++\nid = 1\n", "not closed"),
        (HEADER, "at least one '## ' step"),
        (HEADER + "\n## A step\n\nDo it.\n\n### Explanation\nx\n", "has no ```step block"),
        (LESSON.replace("### Explanation\nIt went through cleanup.\n", ""), "Explanation"),
        (LESSON.replace("### Hint", "### Tip"), "unknown section 'Tip'"),
        (LESSON.replace("\n```\n\n### Hint", "\n\n### Hint"), "not closed"),
        (LESSON.replace("solution = [", "solution = []\nx = [", 1), "must ship one"),
    ],
)
def test_structural_errors(text: str, message: str) -> None:
    assert any(message in what for _, what in problems_of(text)), problems_of(text)


def test_placeholders_are_checked() -> None:
    text = LESSON.replace('data.rcpt = "bob@simmta.test"', 'data.where = "${maildir}"')
    assert any("unknown placeholder ${maildir}" in w for _, w in problems_of(text))
    text = LESSON.replace("send --from", "cat ${qid} --x")
    assert any("unknown placeholder ${qid}" in w for _, w in problems_of(text))


def test_solution_tables() -> None:
    text = LESSON.replace(
        'solution = ["send --from alice@simmta.test --to bob@simmta.test"]',
        'solution = [{ run = "sendmail -f alice@simmta.test bob@simmta.test", stdin = "hi\\n" },'
        " { run = \"send --raw 'EHLO x' QUIT\", may_fail = true }]",
    )
    (step,) = parse_text(text).steps
    assert step.solution[0].stdin == "hi\n"
    assert step.commands == (
        "simmta sendmail -f alice@simmta.test bob@simmta.test",
        "simmta send --raw 'EHLO x' QUIT",
    )
    bad = text.replace("stdin =", "input =")
    assert any("unknown key 'input'" in w for _, w in problems_of(bad))
    gone = text.replace("solution = [", 'action = "simmta ps"\nsolution = [', 1)
    assert any("remove 'action'" in w for _, w in problems_of(gone))


PREDICT = """
[predict]
question = "Who delivers?"

[[predict.choice]]
text = "local"
event = "delivery/delivered"
where = { service = "local" }

[[predict.choice]]
text = "smtpd"
event = "delivery/delivered"
where = { service = "smtpd" }
"""


def test_predictions() -> None:
    text = LESSON.replace("\n[[expect]]", PREDICT + "\n[[expect]]", 1)
    (step,) = parse_text(text).steps
    assert step.predict is not None and step.predict.question == "Who delivers?"
    assert [c for c, _ in step.predict.choices] == ["local", "smtpd"]
    counted = LESSON.replace(
        "\n[[expect]]",
        '\n[predict]\nquestion = "How many?"\ncount = { event = "process/spawned" }\n\n[[expect]]',
        1,
    )
    (step,) = parse_text(counted).steps
    assert step.predict is not None and step.predict.count is not None
    one = text.replace('[[predict.choice]]\ntext = "smtpd"', '[[predict.other]]\ntext = "smtpd"')
    assert any("predict" in w for _, w in problems_of(one))
    bad = text.replace(
        'event = "delivery/delivered"\nwhere = { service = "smtpd" }', 'event = "delivery/flew"'
    )
    assert any("predict: event: 'delivery' has no type 'flew'" in w for _, w in problems_of(bad))


def test_profiles_and_explanations_per_profile() -> None:
    multi = HEADER.replace('config = { queue_run_delay = "2s" }', 'profiles = ["postfix", "qmail"]')
    text = multi + STEP + "\n### Explanation (qmail)\nqmail-queue wrote it.\n"
    (step,) = parse_text(text, "t.md").steps
    assert step.explanation_for("qmail") == "qmail-queue wrote it."
    assert step.explanation_for("postfix") == step.explanation
    bad = multi + STEP + "\n### Explanation (sendmail)\nno such profile here.\n"
    assert any("not one of setup.profiles" in what for _, what in problems_of(bad))
    wrong = HEADER.replace('config = { queue_run_delay = "2s" }', 'profiles = ["qmail"]') + STEP
    assert any("setup.profiles" in what for _, what in problems_of(wrong))  # lacks setup.profile
