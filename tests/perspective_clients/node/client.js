// A Perspective API user's code with Google's Node client (googleapis), unchanged but for the discovery URL.
//
//   NODE_PATH=<node_modules> node client.js DISCOVERY_URL API_KEY     (node_modules: install.py)
//
// The calls are the ones Perspective's own Node example makes (google.discoverAPI, then
// client.comments.analyze({key, resource})). It prints one JSON object: each call's answer, or for
// an error its status and body, for the test to check.
'use strict';

const {google} = require('googleapis');

const COMMENT = 'Thanks for the article. You are a stupid idiot.';

async function call(promise) {
  try {
    const res = await promise;
    return {ok: true, status: res.status, url: res.config.url.toString(), response: res.data};
  } catch (err) {
    if (!err.response) throw err;
    return {ok: false, status: err.response.status, body: err.response.data};
  }
}

async function main(discoveryUrl, apiKey) {
  const client = await google.discoverAPI(discoveryUrl);
  const results = {
    analyze: await call(client.comments.analyze({
      key: apiKey,
      resource: {
        comment: {text: COMMENT},
        requestedAttributes: {TOXICITY: {}, INSULT: {}},
        spanAnnotations: true,
        clientToken: 'node-client-1',
      },
    })),
    suggestscore: await call(client.comments.suggestscore({
      key: apiKey,
      resource: {
        comment: {text: COMMENT},
        attributeScores: {INSULT: {summaryScore: {value: 1}}},
        communityId: 'node-client-test',
        clientToken: 'node-client-2',
      },
    })),
    unknown_attribute: await call(client.comments.analyze({
      key: apiKey,
      resource: {comment: {text: COMMENT}, requestedAttributes: {FLIRTATION: {}}},
    })),
  };
  console.log(JSON.stringify(results));
}

main(process.argv[2], process.argv[3]).catch(err => {
  console.error(err);
  process.exit(1);
});
