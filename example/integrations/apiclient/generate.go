package apiclient

// The client is generated from the package's OpenAPI document by
// oapi-codegen, pinned by the tool directive of this module's go.mod;
// ../check-generated.sh fails when the committed file is not what the
// document generates.
//go:generate go tool oapi-codegen -config cfg.yaml ../../../openapi.yaml
