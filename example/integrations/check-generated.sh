#!/usr/bin/env bash
# Regenerates apiclient from the repository's openapi.yaml with the
# oapi-codegen pinned in go.mod, and fails when the result differs from
# what is committed: the document and the generated client move together.
set -euo pipefail
cd "$(dirname "$0")"

go generate ./apiclient
if ! git diff --exit-code -- apiclient || [ -n "$(git status --porcelain -- apiclient)" ]; then
	git status --short -- apiclient
	echo "check-generated: apiclient is not what openapi.yaml generates; run 'go generate ./apiclient' in example/integrations and commit the result" >&2
	exit 1
fi
echo "check-generated: apiclient is up to date"
