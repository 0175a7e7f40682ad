// Storage: one account for the Functions host (blobs: host locks, timer schedule state, keys),
// the blob container the Flex Consumption plan runs the app package from, the Table the
// rate limiter keeps its shared state in, and the Table of the tenant registry (tenants and the
// hashes of their write keys). Identity access only: no account key works.

param location string
param tags object
param name string
param deploymentContainerName string

@description('Table of rate-limit state: the app\'s CLOUDSCALE_RATE_LIMIT_TABLE default.')
param rateLimitTableName string = 'ratelimits'

@description('Table of tenants and write-key hashes: the app\'s CLOUDSCALE_TENANTS_TABLE default.')
param tenantsTableName string = 'tenants'

@description('Table of suppressions and erasure records: the app\'s CLOUDSCALE_PRIVACY_TABLE default.')
param privacyTableName string = 'privacy'

@description('Redundancy of the account; the rate-limit state is short-lived, so locally redundant is enough.')
param skuName string = 'Standard_LRS'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    // Only Entra identities get in: a leaked or listed key opens nothing.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    accessTier: 'Hot'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

// Flex Consumption reads the app package from here with the app's identity.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource rateLimitTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: rateLimitTableName
}

// Created here so that an operator granted Storage Table Data Contributor on this table alone
// (not the account) finds it; the app would create it too, which takes the account's role.
resource tenantsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: tenantsTableName
}

// Suppressions (keyed hashes of erased subjects) and erasure records; created here for the same reason.
resource privacyTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: privacyTableName
}

output name string = account.name
output id string = account.id
output tableEndpoint string = account.properties.primaryEndpoints.table
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainer.name}'
output rateLimitTableName string = rateLimitTable.name
output tenantsTableName string = tenantsTable.name
output privacyTableName string = privacyTable.name
