// etcd at the release kube-apiserver is built against (go.etcd.io/etcd/server/v3 in its go.mod):
// older etcd lacks the watch progress requests the API server needs to serve streaming lists.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
