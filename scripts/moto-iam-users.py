#!/usr/bin/env python3
"""Creates IAM users on a moto server that enforces IAM, for the tests of what each
credential may do.

    moto-iam-users.py ENDPOINT NAME=POLICY_JSON...

moto started with INITIAL_NO_AUTH_ACTION_COUNT=N answers the first N requests without
checking them and every later one against IAM. Each user costs three requests (user,
inline policy, access key), so start moto with 3 x the number of users. Prints one JSON
object: {NAME: [access key id, secret key], ...}. Needs boto3 (moto's venv has it).
"""

import json
import sys

import boto3


def main() -> None:
    endpoint = sys.argv[1]
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    keys = {}
    for arg in sys.argv[2:]:
        name, policy = arg.split("=", 1)
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=policy)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        keys[name] = [key["AccessKeyId"], key["SecretAccessKey"]]
    print(json.dumps(keys))


if __name__ == "__main__":
    main()
