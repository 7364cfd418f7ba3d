#!/usr/bin/env python3
"""Uploads a file to cdi-uploadproxy's tus endpoint with tuspy (PyPI tuspy 1.1.0), as a
third-party client would: the token as a Bearer header, fixed-size chunks, tuspy's own retries
(each one asks the server for its offset with HEAD and goes on from there).

    python3 tuspy_upload.py --url https://127.0.0.1:PORT --token T --file PATH --ca CA.pem \
        [--chunk-size BYTES] [--retries N] [--retry-delay SECONDS]

Prints one JSON line, {"ok": true, "location": ..., "offset": N, "attempts": N} or
{"ok": false, "error": ...}, and exits 0 or 1.
"""

import argparse
import json
import os
import sys


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the proxy's base URL")
    parser.add_argument("--token", required=True, help="the upload token")
    parser.add_argument("--file", required=True, help="the image to upload")
    parser.add_argument("--ca", required=True, help="PEM file verifying the proxy")
    parser.add_argument("--chunk-size", type=int, default=1 << 20)
    parser.add_argument("--retries", type=int, default=5, help="per chunk")
    parser.add_argument("--retry-delay", type=float, default=0.2, help="seconds")
    return parser.parse_args()


def main():
    args = parse_args()
    # tuspy hands requests verify=True; requests then verifies with REQUESTS_CA_BUNDLE, so the
    # proxy's certificate is checked against the test's CA (and nothing else).
    os.environ["REQUESTS_CA_BUNDLE"] = args.ca
    os.environ.pop("CURL_CA_BUNDLE", None)

    from tusclient import client
    from tusclient.uploader import Uploader

    attempts = {"requests": 0}

    class CountingUploader(Uploader):
        """Counts PATCH attempts (first tries and retries alike)."""

        def _do_request(self):
            attempts["requests"] += 1
            return super()._do_request()

    tus = client.TusClient(
        args.url.rstrip("/") + "/v1beta1/upload-tus",
        headers={"Authorization": "Bearer " + args.token},
    )
    uploader = CountingUploader(
        file_path=args.file,
        client=tus,
        chunk_size=args.chunk_size,
        metadata={"filename": os.path.basename(args.file)},
        retries=args.retries,
        retry_delay=args.retry_delay,
        verify_tls_cert=True,
    )
    try:
        uploader.upload()
    except Exception as error:  # tuspy raises several types; report any of them.
        detail = getattr(error, "response_content", None)
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        print(
            json.dumps(
                {
                    "ok": False,
                    "error": "{}: {}".format(type(error).__name__, error),
                    "status": getattr(error, "status_code", None),
                    "body": detail,
                    "offset": uploader.offset,
                }
            )
        )
        return 1
    print(
        json.dumps(
            {
                "ok": uploader.offset == uploader.get_file_size(),
                "location": uploader.url,
                "offset": uploader.offset,
                "attempts": attempts["requests"],
            }
        )
    )
    return 0 if uploader.offset == uploader.get_file_size() else 1


if __name__ == "__main__":
    sys.exit(main())
