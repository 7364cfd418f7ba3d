"""Seeds the object stores the tests start (moto's S3, the GCS emulator) with real clients:
boto3 for S3 (an IAM user when moto checks credentials, objects with the checksums boto3
sends), plain JSON-API requests for GCS.

    objectstore.py s3-user ENDPOINT                         -> prints "KEY_ID SECRET"
    objectstore.py s3-put ENDPOINT KEY_ID SECRET BUCKET KEY FILE [CHECKSUM_ALGORITHM]
    objectstore.py gcs-put ENDPOINT BUCKET OBJECT FILE
"""

import json
import sys
import urllib.parse
import urllib.request


def s3_user(endpoint):
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        aws_access_key_id="AKIDSEED",
        aws_secret_access_key="seed",
        region_name="us-east-1",
    )
    iam.create_user(UserName="importer")
    policy = iam.create_policy(
        PolicyName="read-write",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )["Policy"]["Arn"]
    iam.attach_user_policy(UserName="importer", PolicyArn=policy)
    key = iam.create_access_key(UserName="importer")["AccessKey"]
    print(key["AccessKeyId"], key["SecretAccessKey"])


def s3_put(endpoint, key_id, secret, bucket, key, path, algorithm=None):
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    with open(path, "rb") as f:
        s3.put_object(Bucket=bucket, Key=key, Body=f.read(), **extra)


def gcs_put(endpoint, bucket, name, path):
    def call(url, data, content_type):
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": content_type}
        )
        try:
            urllib.request.urlopen(request).read()
        except urllib.error.HTTPError as e:
            if e.code != 409:  # the bucket exists
                raise

    call(f"{endpoint}/storage/v1/b", json.dumps({"name": bucket}).encode(), "application/json")
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    with open(path, "rb") as f:
        call(
            f"{endpoint}/upload/storage/v1/b/{bucket}/o?{query}",
            f.read(),
            "application/octet-stream",
        )


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"s3-user": s3_user, "s3-put": s3_put, "gcs-put": gcs_put}[command](*args)
