from weftclient.cli import main

main()
