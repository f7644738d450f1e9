#!/bin/sh
# A Jupyter server as a Sky Port job.
#
# Submit it with `swm submit examples/jupyter.sh`, or through the REST API as the JupyterHub spawner does
# (POST /user/job with the script as `script_content`). Once the job is R, its notebook server answers on
# port 8888 of the job's first node: GET /user/job/{id} (or `swm show ID`) gives that node's address as
# node_ips[0] (with the local gate, 127.0.0.1). Cancel the job (`swm cancel ID`, or DELETE
# /user/job/{id}) to stop the server and release the cloud machine.
#
# `ports 8888/tcp/in` opens 8888 to the user on the job's nodes. The token printed in the job's stderr
# (`swm logs --stderr ID`) protects the server; anyone who can reach the port and holds it gets in.
#
#SWM name jupyter
#SWM comment Jupyter Lab on port 8888
#SWM ports 8888/tcp/in
#SWM duration 08:00:00
#
# Run it in a container image that has Jupyter (remove the extra '#' to use it); without one, the job runs
# as a plain process on the node and needs `jupyter` installed there.
##SWM container-image quay.io/jupyter/base-notebook:latest
#
# Files the notebooks need, uploaded into the job's directory before it starts:
##SWM input-files notebook.ipynb data.csv
##SWM output-files notebook.ipynb

export HOME="$PWD"
export XDG_CACHE_HOME="$PWD/.cache"
exec jupyter lab --ip 0.0.0.0 --port 8888 --no-browser
