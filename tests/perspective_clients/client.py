"""A Perspective API user's code with Google's Python client, unchanged but for discoveryServiceUrl.

    client.py DISCOVERY_URL API_KEY      (run with the test's own venv: install.py)

The calls are the ones Perspective's own examples make; nothing here knows it
talks to toxic-service. It prints one JSON object: each call's answer, or for
an HttpError its status and body, for the test to check.
"""

import json
import sys

from googleapiclient import discovery
from googleapiclient.errors import HttpError

COMMENT = "Thanks for the article. You are a stupid idiot."


def call(request):
    try:
        return {"ok": True, "response": request.execute()}
    except HttpError as exc:
        return {"ok": False, "status": exc.resp.status, "body": json.loads(exc.content.decode("utf-8"))}


def main(discovery_url, api_key):
    client = discovery.build(
        "commentanalyzer",
        "v1alpha1",
        developerKey=api_key,
        discoveryServiceUrl=discovery_url,
        static_discovery=False,
    )
    analyze_request = {
        "comment": {"text": COMMENT},
        "requestedAttributes": {"TOXICITY": {}, "INSULT": {}},
        "spanAnnotations": True,
        "languages": ["en"],
        "clientToken": "python-client-1",
    }
    suggest_request = {
        "comment": {"text": COMMENT},
        "attributeScores": {"TOXICITY": {"summaryScore": {"value": 1.0}}},
        "communityId": "python-client-test",
        "clientToken": "python-client-2",
    }
    unknown_attribute = {"comment": {"text": COMMENT}, "requestedAttributes": {"FLIRTATION": {}}}
    results = {
        "analyze": call(client.comments().analyze(body=analyze_request)),
        "suggestscore": call(client.comments().suggestscore(body=suggest_request)),
        "unknown_attribute": call(client.comments().analyze(body=unknown_attribute)),
        "request_uri": client.comments().analyze(body=analyze_request).uri,
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
