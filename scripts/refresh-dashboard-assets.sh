#!/bin/sh
# Vendor the dashboard's and /docs' front-end files into the package, at the
# pinned versions below, from the npm registry (`npm pack`: the published
# tarballs, nothing installed, no build). The controller serves them itself:
# a testbed is often offline. Change a version, run this from the repository
# root, check the dashboard and /docs (tests/test_dashboard.py), commit.
set -eu
PREACT=11.2.0           # the view library (React's API in 4 kB)
HTM=3.1.1               # JSX-like templates in plain JavaScript: no build step
SWAGGER_UI=5.35.0       # /docs

root=$(cd "$(dirname "$0")/.." && pwd)
vendor="$root/src/shoal/controller/static/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "preact@$PREACT" "htm@$HTM" "swagger-ui-dist@$SWAGGER_UI" >/dev/null
for name in preact htm swagger-ui-dist; do
    mkdir "$name"
    tar xzf "$name"-*.tgz -C "$name" --strip-components=1
done

# Source maps are not shipped: drop the comments that would ask for them. The
# ES modules are saved as .js: every mimetypes table serves that as JavaScript.
strip_map() { sed '/^\/\/# sourceMappingURL=/d; s|/\*# sourceMappingURL=[^*]*\*/||' "$1" >"$2"; }

rm -rf "$vendor"
mkdir -p "$vendor/swagger-ui"
strip_map preact/dist/preact.mjs "$vendor/preact.js"
strip_map preact/hooks/dist/hooks.mjs "$vendor/preact-hooks.js"
cp preact/LICENSE "$vendor/LICENSE.preact"
strip_map htm/dist/htm.mjs "$vendor/htm.js"
cp htm/LICENSE "$vendor/LICENSE.htm"
for file in swagger-ui-bundle.js swagger-ui.css; do
    strip_map "swagger-ui-dist/$file" "$vendor/swagger-ui/$file"
done
cp swagger-ui-dist/favicon-32x32.png swagger-ui-dist/LICENSE swagger-ui-dist/NOTICE \
    "$vendor/swagger-ui/"
cat >"$vendor/VERSIONS" <<EOF
preact $PREACT
htm $HTM
swagger-ui-dist $SWAGGER_UI
EOF
echo "vendored into $vendor:"
cat "$vendor/VERSIONS"
