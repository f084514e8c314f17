"""Splitting multi-task requests into clauses, and leaving single tasks whole."""

from __future__ import annotations

import pytest

from shared.search.clauses import split_clauses


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("book a flight to Rome, then convert the price to euros and email it to me",
         ["book a flight to Rome", "convert the price to euros", "email it to me"]),
        ("First create a bucket; after that, upload the report", ["First create a bucket", "upload the report"]),
        ("Delete the old volume. Then create a snapshot of the new one",
         ["Delete the old volume", "create a snapshot of the new one"]),
        ("get the stock price of MSFT, summarize the news and finally send an SMS to Bob",
         ["get the stock price of MSFT", "summarize the news", "send an SMS to Bob"]),
        ("create a bucket, upload the report to it, and finally email the link to Bob",
         ["create a bucket", "upload the report to it", "email the link to Bob"]),
        ("When the job finishes, email me, then archive the logs",
         ["When the job finishes, email me", "archive the logs"]),
        ("List the hosted configuration versions in AppConfig and assume a role with AWS STS",
         ["List the hosted configuration versions in AppConfig", "assume a role with AWS STS"]),
        ("create a support ticket and please notify the on-call engineer",
         ["create a support ticket", "please notify the on-call engineer"]),
        ("remove the old tags from the volume and untag the snapshot",
         ["remove the old tags from the volume", "untag the snapshot"]),
    ],
    ids=["comma-then-and", "first-after-that", "sentences", "finally", "tasks-after-commas", "condition-then-task",
         "and-then-imperative", "and-then-filler-imperative", "and-then-prefixed-verb"],
)
def test_multi_task_requests_split_per_task(query: str, expected: list[str]) -> None:
    assert split_clauses(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "what's the weather in Paris and London",
        "search and replace text in a file",
        "Using Amazon S3, create a bucket in a specific region",
        "Return information about tests, given a specific Device Farm project",
        "Launch an instance with an AMI, instance type, subnet, and tags",
        "Retrieve an item from the Music table. The table has a partition key",
        "convert 10 km to miles",
        "Launch an instance using the specified AMI, instance type, subnet, block device mapping, and tags",
        "List reserved DB instances for the specified instance class, duration, offering type, and availability zone",
        "If the bucket already exists, then delete it",
        "Replace the ACL on a bucket, you must specify all the grants",
        "Create a report named ExampleReport in AWS Cost and Usage Report Service",
        "Add a tag key and value to an IAM role",
        "Generate an RSA key pair for encryption and decryption",
        "Obtain a shard iterator for the provided stream ARN and shard ID",
        "Cancel the specified Spot fleet request and terminates its Spot Instances",
        "Create an Internet-facing load balancer and enables the Availability Zones for the subnets",
        "update the button color and design of the landing page",
        "list the product prices and discount codes for the store",
    ],
    ids=["and-between-nouns", "verb-and-verb", "context-prefix", "subordinate", "list", "elaboration", "short",
         "list-of-longer-items", "list-closed-by-and", "condition-then-consequence", "you-continues",
         "name-with-and", "noun-and-noun", "nominal-and-nominal", "noun-phrase-and-noun-phrase",
         "third-person-verb", "third-person-verb-long", "prefix-noun-design", "prefix-noun-discount"],
)
def test_single_task_requests_stay_whole(query: str) -> None:
    assert split_clauses(query) == [query]


@pytest.mark.parametrize("query", ["", "   "], ids=["empty", "blank"])
def test_empty_query_has_no_clauses(query: str) -> None:
    assert split_clauses(query) == []


def test_at_most_six_clauses() -> None:
    query = ", then ".join(f"create resource number {i}" for i in range(9))
    clauses = split_clauses(query)
    assert len(clauses) == 6
    assert "number 8" in clauses[-1]
