"""Fixtures for tool-search tests: one model load per session and a small catalog of everyday tools."""

from __future__ import annotations

from typing import Any

import pytest

from shared.search.embedding import PackagedMiniLm, shared_encoder

from .fakes import CountingEncoder


def fn(name: str, description: str, params: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """An OpenAI-shaped spec with string parameters."""
    properties = {p: {"type": "string", "description": d} for p, d in (params or {}).items()}
    return {"name": name, "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(properties)}, **extra}


CATALOG: list[dict[str, Any]] = [
    fn("get_weather", "Current weather conditions for a city.", {"city": "City name", "units": "metric or imperial"},
       tags=["weather"], source="demo"),
    fn("get_forecast", "Weather forecast for the next days.", {"city": "City name", "days": "How many days"},
       tags=["weather"], source="demo"),
    fn("book_flight", "Book a flight ticket between two airports.", {"origin": "IATA code", "destination": "IATA code",
       "date": "Departure date"}, tags=["travel"], source="travel-api"),
    fn("search_flights", "Search available flights and fares.", {"origin": "From airport", "destination": "To airport"},
       tags=["travel"], source="travel-api"),
    fn("book_hotel", "Reserve a hotel room.", {"city": "City", "check_in": "Arrival date", "nights": "Nights"},
       tags=["travel"], source="travel-api"),
    fn("rent_car", "Rent a car at a location for a period.", {"location": "Pick-up place"}, tags=["travel"],
       source="travel-api"),
    {"type": "function", "function": fn("convertCurrency", "Convert an amount of money from one currency to another.",
                                        {"amount": "Amount", "from_currency": "ISO code", "to_currency": "ISO code"},
                                        tags=["finance"], source="fx")},
    fn("get_exchange_rate", "Latest exchange rate between two currencies.", {"base": "ISO code", "quote": "ISO code"},
       tags=["finance"], source="fx"),
    fn("get_stock_price", "Latest trading price of a stock ticker.", {"ticker": "Stock symbol"}, tags=["finance"],
       source="markets"),
    fn("send_email", "Send an email message to a recipient.", {"to": "Recipient address", "subject": "Subject line",
       "body": "Message text"}, tags=["messaging"], source="mail"),
    fn("read_inbox", "List the newest messages in the mailbox.", {"limit": "How many"}, tags=["messaging"],
       source="mail"),
    fn("send_sms", "Send a text message to a phone number.", {"phone": "Phone number", "text": "Message"},
       tags=["messaging"], source="sms"),
    fn("post_slack_message", "Post a message to a Slack channel.", {"channel": "Channel", "text": "Message"},
       tags=["messaging"], source="slack"),
    fn("create_calendar_event", "Create an event in the user's calendar.", {"title": "Title", "start": "Start time"},
       tags=["productivity"], source="calendar"),
    fn("list_calendar_events", "List upcoming calendar events.", {"days": "Look-ahead days"}, tags=["productivity"],
       source="calendar"),
    fn("create_todo", "Add an item to the to-do list.", {"text": "Task text"}, tags=["productivity"], source="todo"),
    fn("read_file", "Read the contents of a text file.", {"path": "File path"}, tags=["files"], source="fs"),
    fn("write_file", "Write text to a file, replacing its contents.", {"path": "File path", "content": "Text"},
       tags=["files"], source="fs"),
    fn("list_directory", "List the files in a folder.", {"path": "Folder path"}, tags=["files"], source="fs"),
    fn("compress_files", "Create a zip archive from files.", {"paths": "Files", "output": "Zip path"},
       tags=["files"], source="fs"),
    fn("sha256_hash", "Compute the SHA-256 digest of a string.", {"text": "Input"}, tags=["crypto"], source="util"),
    fn("generate_password", "Generate a random strong password.", {"length": "Characters"}, tags=["crypto"],
       source="util"),
    fn("translate_text", "Translate text into another language.", {"text": "Text", "target_language": "Language"},
       tags=["language"], source="nlp"),
    fn("summarize_text", "Summarize a long document into a few sentences.", {"text": "Document"},
       tags=["language"], source="nlp"),
    fn("detect_language", "Detect which language a text is written in.", {"text": "Text"}, tags=["language"],
       source="nlp"),
    fn("calculate_triangle_area", "Area of a triangle from its base and height.", {"base": "Base", "height": "Height"},
       tags=["math"], source="math"),
    fn("solve_quadratic", "Roots of a quadratic equation ax^2+bx+c.", {"a": "a", "b": "b", "c": "c"}, tags=["math"],
       source="math"),
    fn("unit_convert", "Convert a quantity between units of measurement (km, miles, kg, pounds).",
       {"value": "Value", "from_unit": "Unit", "to_unit": "Unit"}, tags=["math"], source="math"),
    fn("geocode_address", "Latitude and longitude of a street address.", {"address": "Address"}, tags=["maps"],
       source="maps"),
    fn("get_directions", "Driving or walking directions between two places.", {"origin": "Start", "destination": "End"},
       tags=["maps"], source="maps"),
    fn("play_music", "Play a song or playlist on the speaker.", {"query": "Song, artist or playlist"},
       tags=["media"], source="media"),
    fn("set_thermostat", "Set the target temperature of the home thermostat.", {"celsius": "Temperature"},
       tags=["home"], source="home"),
]


@pytest.fixture(scope="session")
def encoder() -> PackagedMiniLm:
    """The process-wide query encoder (ONNX Runtime), loaded once for the session."""
    enc = shared_encoder()
    enc.warm_up()
    return enc


@pytest.fixture
def counting(encoder: PackagedMiniLm) -> CountingEncoder:
    return CountingEncoder(encoder)


@pytest.fixture(scope="session")
def catalog() -> list[dict[str, Any]]:
    """32 everyday tools across 15 tags, one in the ``{"type": "function"}`` wrapper."""
    return CATALOG


@pytest.fixture(scope="session")
def retriever(encoder: PackagedMiniLm, catalog: list[dict[str, Any]]):
    """A hybrid retriever over :func:`catalog` with default settings (read-only use)."""
    from shared.search.retrieval import HybridRetriever

    return HybridRetriever.from_specs(catalog, encoder=encoder)
