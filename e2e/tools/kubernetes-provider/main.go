// pulumi-resource-kubernetes served from the pulumi-kubernetes provider module.
//
// The upstream command embeds a schema generated at release time; that file is not part of the
// module, so the build (e2e/tools/build.py) writes schema-embed.json and terraform-mapping-embed.json
// beside this file from the module's schema.json with the release version stamped in.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
