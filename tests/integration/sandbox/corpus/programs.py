"""Ordinary programs as LLMs write them, against the demo tools: ``(id, code, expected result)``.

Tools are called with and without ``await``, in loops, helpers, classes and comprehensions; names like ``input``,
``id``, ``type``, ``log`` and ``list`` are used for the code's own values; source-prefixed tools are called as
``units.convert(...)`` and ``money.convert(...)`` as well as by their flat names.
"""

from __future__ import annotations

from typing import Any

PROGRAMS: list[tuple[str, str, Any]] = [
    ("sync-call-subscript", """
r = calculate("2 * (3 + 4)")
r["result"]
""", 14),
    ("sync-call-result-var", """
x = calculate("1 + 1")
result = x["result"]
""", 2),
    ("await-call", """
r = await calculate("10 / 4")
r["result"]
""", 2.5),
    ("sync-loop", """
totals = []
for expr in ["1+1", "2*3", "10-4"]:
    totals.append(calculate(expr)["result"])
sum(totals)
""", 14),
    ("list-comprehension-sync", """
values = [calculate(f"{n} ** 2")["result"] for n in range(1, 5)]
values
""", [1, 4, 9, 16]),
    ("gather-parallel", """
import asyncio
rows = await asyncio.gather(*[calculate(f"{n} * 10") for n in range(3)])
[r["result"] for r in rows]
""", [0, 10, 20]),
    ("gather-stored-list", """
import asyncio
tasks = [convert_units(v, "km", "m") for v in (1, 2)]
results = await asyncio.gather(*tasks)
[r["result"] for r in results]
""", [1000, 2000]),
    ("asyncio-run-main", """
import asyncio

async def main():
    a, b = await asyncio.gather(calculate("3 + 4"), calculate("5 * 6"))
    return {"a": a["result"], "b": b["result"]}

asyncio.run(main())
""", {"a": 7, "b": 30}),
    ("async-main-sync-calls", """
import asyncio

async def main():
    first = calculate("2 + 2")
    second = calculate(f"{first['result']} * 3")
    return second["result"]

result = asyncio.run(main())
""", 12),
    ("helper-function", """
def km_to_miles(km):
    return convert_units(km, "km", "mi")["result"]

round(km_to_miles(10), 2)
""", 6.21),
    ("class-using-tools", """
class Converter:
    def __init__(self, unit_from, unit_to):
        self.unit_from = unit_from
        self.unit_to = unit_to

    def __call__(self, value):
        return convert_units(value, self.unit_from, self.unit_to)["result"]

c = Converter("kg", "g")
[c(1), c(2.5)]
""", [1000, 2500]),
    ("shadowed-input", """
input = {"city": "Oslo", "n": 3}
output = calculate(f"{input['n']} * 7")
output["result"]
""", 21),
    ("shadowed-id-type-log-list", """
log = []
id = 7
type = "sum"
list = [1, 2, 3]
for item in list:
    log.append(f"{type}:{item * id}")
log
""", ["sum:7", "sum:14", "sum:21"]),
    ("shadowed-open-and-format", """
open = [calculate("1+2")["result"]]
format = "value={}"
format.format(open[0])
""", "value=3"),
    ("try-except-tool-failure", """
try:
    fail_always("service down")
    outcome = "no error"
except ToolError as e:
    outcome = "caught"
outcome
""", "caught"),
    ("try-except-exception", """
try:
    calculate("1/0")
    status = "ok"
except Exception as err:
    status = "failed: " + type(err).__name__
status
""", "failed: ToolError"),
    ("await-failure-caught", """
try:
    await fail_always()
except ToolError as e:
    result = "handled"
""", "handled"),
    ("early-return-dict", """
def check(values):
    if not values:
        return {"ok": False, "reason": "empty"}
    stats = summary_statistics(values)
    return {"ok": True, "mean": stats["mean"]}

[check([]), check([2, 4, 6])]
""", [{"ok": False, "reason": "empty"}, {"ok": True, "mean": 4.0}]),
    ("json-roundtrip", """
import json
data = json.loads('{"items": [{"price": 3}, {"price": 4}]}')
q = json_query(data, "$.items[*].price")
json.dumps({"prices": q["matches"], "total": sum(q["matches"])})
""", '{"prices": [3, 4], "total": 7}'),
    ("datetime-and-tool", """
from datetime import date, timedelta
start = date(2024, 1, 1)
end = start + timedelta(days=59)
diff = date_difference(start.isoformat(), (end + timedelta(days=1)).isoformat())
diff["calendar_days"]
""", 60),
    ("regex-local-and-tool", """
import re
text = "Order 12 shipped, order 7 pending"
local = [int(n) for n in re.findall(r"\\d+", text)]
remote = regex_extract(r"\\d+", text)
[local, remote["count"]]
""", [[12, 7], 2]),
    ("math-module", """
import math
r = calculate("2 ** 10")["result"]
math.log2(r)
""", 10.0),
    ("collections-counter", """
from collections import Counter
words = "the cat and the hat and the bat".split()
freq = word_frequency(" ".join(words), top=2)
[Counter(words).most_common(1)[0][0], freq["total_words"] > 0]
""", ["the", True]),
    ("defaultdict-grouping", """
from collections import defaultdict
groups = defaultdict(list)
for unit, value in [("km", 1), ("m", 5), ("km", 3)]:
    groups[unit].append(value)
{k: sum(v) for k, v in groups.items()}
""", {"km": 4, "m": 5}),
    ("fstring-formatting", """
rate = currency_convert(100, "USD", "EUR")
f"{rate['amount']} {rate['from_currency']} = {rate['result']:.2f} {rate['to_currency']}"
""", "100 USD = 91.31 EUR"),
    ("str-format-method", """
s = summary_statistics([1, 2, 3, 4])
"mean {:.1f}, median {median}".format(s["mean"], median=s["median"])
""", "mean 2.5, median 2.5"),
    ("namespace-call", """
r = units.convert(5, "km", "m")
r["result"]
""", 5000),
    ("namespace-await", """
r = await money.convert(10, "USD", "EUR")
r["result"]
""", 9.131),
    ("namespace-flat-name", """
units_convert(2, "kg", "g")["result"] + money_convert(100, "USD", "EUR")["result"]
""", 2091.31),
    ("namespace-gather", """
import asyncio
a, b = await asyncio.gather(units.convert(1, "m", "cm"), units.convert(1, "km", "m"))
[a["result"], b["result"]]
""", [100, 1000]),
    ("while-loop-until", """
n = 1
while calculate(f"{n} * {n}")["result"] < 50:
    n += 1
n
""", 8),
    ("dict-comprehension-tools", """
cities = {"a": "1+1", "b": "2+2"}
{k: calculate(v)["result"] for k, v in cities.items()}
""", {"a": 2, "b": 4}),
    ("sorted-with-tool", """
r = sort_list([5, 3, 9, 1], descending=True)
r["items"][:2]
""", [9, 5]),
    ("lambda-key-sync-tool", """
exprs = ["3*3", "1+1", "2*2"]
sorted(exprs, key=lambda e: calculate(e)["result"])
""", ["1+1", "2*2", "3*3"]),
    ("map-with-tool", """
list(map(lambda e: calculate(e)["result"], ["1+2", "3+4"]))
""", [3, 7]),
    ("text-stats-pipeline", """
doc = "Hello world. This is Weft."
stats = text_statistics(doc)
{"words": stats["words"], "sentences": stats["sentences"]}
""", {"words": 5, "sentences": 2}),
    ("hash-and-encode", """
h = hash_text("abc")["hex"][:8]
e = encode_text("hi")["result"]
d = decode_text(e)["result"]
[h, e, d]
""", ["ba7816bf", "aGk=", "hi"]),
    ("add-duration", """
r = add_duration("2024-01-31", days=1)
r["result"]["date"]
""", "2024-02-01"),
    ("timezone-convert", """
r = convert_timezone("2024-06-01T12:00:00", "Europe/Oslo")
r["result"]["time"]
""", "14:00:00"),
    ("format-table", """
t = format_table([{"a": 1, "b": 2}], style="csv")
t["table"].splitlines()[0]
""", "a,b"),
    ("nested-functions-and-closure", """
def make_scaler(factor):
    def scale(expr):
        return calculate(f"({expr}) * {factor}")["result"]
    return scale

double = make_scaler(2)
[double("1+1"), double("5")]
""", [4, 10]),
    ("generator-of-results", """
def results(exprs):
    for e in exprs:
        yield calculate(e)["result"]

sum(results(["1", "2", "3"]))
""", 6),
    ("exception-in-helper-reraised", """
class AppError(Exception):
    pass

def safe(expr):
    try:
        return calculate(expr)["result"]
    except ToolError as e:
        raise AppError("bad expression") from e

try:
    safe("1/0")
except AppError as e:
    result = str(e)
""", "bad expression"),
    ("gather-with-exceptions", """
import asyncio
res = await asyncio.gather(calculate("1+1"), fail_always("nope"), return_exceptions=True)
[type(r).__name__ if isinstance(r, Exception) else r["result"] for r in res]
""", [2, "ToolError"]),
    ("create-task-then-await", """
import asyncio
t1 = asyncio.create_task(calculate("6*7"))
t2 = asyncio.create_task(calculate("1+1"))
(await t1)["result"] - (await t2)["result"]
""", 40),
    ("stored-coroutines-awaited", """
a = calculate("2+3")
b = calculate("4+5")
(await a)["result"] + (await b)["result"]
""", 14),
    ("taskgroup", """
import asyncio
async with asyncio.TaskGroup() as tg:
    tasks = [tg.create_task(calculate(f"{i}+{i}")) for i in range(3)]
[t.result()["result"] for t in tasks]
""", [0, 2, 4]),
    ("as-completed", """
import asyncio
out = []
for fut in asyncio.as_completed([calculate("1"), calculate("2")]):
    out.append((await fut)["result"])
sorted(out)
""", [1, 2]),
    ("statistics-local-vs-tool", """
import statistics
vals = [2, 4, 4, 4, 5, 5, 7, 9]
remote = summary_statistics(vals)
[statistics.mean(vals), remote["mean"], remote["median"]]
""", [5, 5.0, 4.5]),
    ("match-statement-on-result", """
def describe(r):
    match r:
        case {"result": int(n)} if n > 10:
            return "big"
        case {"result": n}:
            return f"small {n}"
        case _:
            return "?"

[describe(calculate("3*4")), describe(calculate("1+1"))]
""", ["big", "small 2"]),
    ("dataclass-like-class", """
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def __repr__(self):
        return f"Point({self.x}, {self.y})"

p = Point(calculate("1+2")["result"], calculate("2+2")["result"])
repr(p)
""", "Point(3, 4)"),
    ("print-and-result", """
for unit in ["m", "cm"]:
    print(unit, convert_units(1, "km", unit)["result"])
result = "printed"
""", "printed"),
    ("decimal-money", """
from decimal import Decimal
r = currency_convert(19.99, "USD", "EUR")
str(Decimal(str(r["result"])).quantize(Decimal("0.01")))
""", "18.25"),
    ("global-counter", """
calls = 0
def counted(expr):
    global calls
    calls += 1
    return calculate(expr)["result"]
[counted("1"), counted("2"), calls]
""", [1, 2, 2]),
    ("functools-reduce", """
import functools
functools.reduce(lambda acc, e: acc + calculate(e)["result"], ["1", "2", "3"], 0)
""", 6),
]
