from powertools_cli.app import main

main()
